"""Frames a model finds hard, as the device's fallback policy sees them: a detection with a
score in the uncertainty band [band_lo, band_hi). Writes them as JPEGs for `edge-agent label`.

Usage: python engines/recipes/hard_frames.py MODEL.onnx CLIP OUT [--last-frame N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    import cv2
    import numpy as np

    from agent.engines.detector import load_detector
    from agent.engines.ort import OnnxRuntimeConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("clip", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--band-lo", type=float, default=0.25)
    parser.add_argument("--band-hi", type=float, default=0.5)
    parser.add_argument("--last-frame", type=int, default=189, help="keep off the held-out end")
    parser.add_argument("--every", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(args.clip))
    kept = seen = 0
    with load_detector(args.model, OnnxRuntimeConfig(), conf_threshold=args.band_lo) as det:
        for index in range(args.last_frame + 1):
            ok, frame = cap.read()
            if not ok:
                break
            if index % args.every:
                continue
            seen += 1
            dets, _ = det.detect(frame)
            if np.any(dets.confidence < args.band_hi):
                cv2.imwrite(str(args.out / f"hard_{index:06d}.jpg"), frame)
                kept += 1
    print(f"hard frames: {kept} of {seen} frames have a score in [{args.band_lo}, {args.band_hi})")


if __name__ == "__main__":
    main()
