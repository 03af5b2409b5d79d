"""Frames of a clip decoded up front, for the benchmarks that feed a loop from memory."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_frames(clip: Path, n: int, stride: int = 1) -> list[np.ndarray]:
    """Up to `n` frames (h, w, 3) uint8 BGR from the clip, every `stride`-th.

    Raises:
        SystemExit: the clip does not open or gives no frame.
    """
    cap = cv2.VideoCapture(str(clip))
    if not cap.isOpened():
        raise SystemExit(f"cannot open clip {clip}")
    frames: list[np.ndarray] = []
    i = 0
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        if i % stride == 0:
            frames.append(frame)
        i += 1
    cap.release()
    if not frames:
        raise SystemExit(f"no frames decoded from {clip}")
    return frames
