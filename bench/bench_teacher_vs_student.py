"""Teacher vs student speed on this CPU: SSD-MobileNet-v2 (OpenCV DNN) vs the demo YOLO (ORT).

Both run on the same frames of the demo clip, interleaved frame by frame (teacher, student,
teacher, student, ...) so that load from other processes hits both alike. Each timing is
wall time per frame including pre- and post-processing:

  teacher  blobFromImage 300x300 + forward + rows -> labelled boxes (agent.label.teachers)
  student  letterbox + session.run + decode/NMS (agent.engines.yolo), ONNX Runtime CPU

Reported: median and p90 ms/frame of each and the ratio teacher / student.

Usage:
    python bench/bench_teacher_vs_student.py [--frames 60] [--warmup 5] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from agent.contracts.manifest import Manifest
from agent.engines.yolo import DecodeParams, Layout, decode, letterbox
from agent.label.teachers import create_teacher

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "engines" / "demo"


def read_frames(clip: Path, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over the clip, (h, w, 3) uint8 BGR."""
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    idx = np.linspace(0, len(frames) - 1, count).astype(int)
    return [frames[i] for i in idx]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: library defaults")
    parser.add_argument("--clip", type=Path, default=DEMO / "clip.mp4")
    parser.add_argument("--model", type=Path, default=DEMO / "model.onnx")
    args = parser.parse_args()

    manifest = Manifest.model_validate_json((args.model.parent / "manifest.json").read_text())
    frames = read_frames(args.clip, args.frames)
    if args.threads:
        cv2.setNumThreads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(args.model), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    nc = len(manifest.class_names)
    params = DecodeParams(conf_threshold=0.25)
    teacher = create_teacher("ssd-mobilenet-v2", manifest.class_names)

    def student(frame: np.ndarray) -> int:
        tensor, info = letterbox(frame, manifest.input_size)
        out = session.run(None, {name: tensor})
        return len(decode(out, Layout.V8, nc, info, frame.shape[:2], params))

    try:
        for frame in frames[: args.warmup]:
            teacher.detect(frame)
            student(frame)
        t_ms: list[float] = []
        s_ms: list[float] = []
        for frame in frames:
            t0 = time.perf_counter()
            teacher.detect(frame)
            t1 = time.perf_counter()
            student(frame)
            t2 = time.perf_counter()
            t_ms.append((t1 - t0) * 1000)
            s_ms.append((t2 - t1) * 1000)
    finally:
        teacher.close()

    def p90(xs: list[float]) -> float:
        return float(np.percentile(xs, 90))

    report = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": args.threads or "default",
        "frames": len(frames),
        "frame_size": list(frames[0].shape[1::-1]),
        "teacher": {"name": "ssd-mobilenet-v2 300x300 (OpenCV DNN " + cv2.__version__ + ")",
                    "median_ms": round(statistics.median(t_ms), 1), "p90_ms": round(p90(t_ms), 1)},
        "student": {"name": f"{manifest.name} v{manifest.version} {manifest.input_size} "
                            f"(ONNX Runtime {ort.__version__})",
                    "median_ms": round(statistics.median(s_ms), 1), "p90_ms": round(p90(s_ms), 1)},
        "teacher_over_student": round(statistics.median(t_ms) / statistics.median(s_ms), 2),
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
