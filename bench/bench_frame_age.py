"""Frame age at inference with the newest-frame policy, when inference is slower than the camera.

A paced file camera (`CameraReader` on the demo clip, frames released at the camera's fps)
feeds a consumer that works like the inference loop: `ReaderGroup.next_frame()`, then a
job that takes longer than one frame interval. Frame age = time the consumer takes the
frame minus its capture time, in frame intervals (target p95 <= 2, BRIEF.md §6).

Modes, side by side in one run:
  newest-sleep  the reader under test; the job sleeps `--slowdown` x the frame interval.
  newest-onnx   the reader under test; the job is the demo YOLO through onnxruntime, and
                the camera fps is set so one inference takes `--slowdown` intervals.
  fifo-sleep    baseline without the policy: every frame queued (queue.Queue) and
                processed in order, same job as newest-sleep; its age grows without bound.

Usage:
    python bench/bench_frame_age.py [--seconds 15] [--slowdown 1.5] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.config import CameraConfig  # noqa: E402
from agent.sources.capture import EndOfStream, FileSource  # noqa: E402
from agent.sources.config import FileSourceConfig  # noqa: E402
from agent.sources.reader import CameraReader, FrameSignal, ReaderGroup  # noqa: E402

DEMO_CLIP = REPO / "engines" / "demo" / "clip.mp4"
DEMO_MODEL = REPO / "engines" / "demo" / "model.onnx"
DOCS = REPO / "docs" / "benchmarks.md"


@dataclass
class Result:
    """Frame ages of one mode, in frame intervals."""

    mode: str
    fps: float
    job_ms: float
    ages: list[float]
    dropped: int

    def pct(self, q: float) -> float:
        """The q-th percentile (0-100) of the ages."""
        return float(np.percentile(np.asarray(self.ages), q)) if self.ages else float("nan")


def sleep_job(seconds: float) -> Callable[[np.ndarray], None]:
    """A stand-in inference that takes `seconds` for any (h, w, 3) frame."""

    def job(image: np.ndarray) -> None:
        time.sleep(seconds)

    return job


def onnx_job(model: Path, threads: int) -> tuple[Callable[[np.ndarray], None], float]:
    """Demo YOLO on onnxruntime (plain resize + run); returns (job, mean seconds per call)."""
    import onnxruntime as ort  # optional: only this mode needs it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    h, w = int(inp.shape[2]), int(inp.shape[3])

    def job(image: np.ndarray) -> None:
        blob = cv2.dnn.blobFromImage(image, 1 / 255.0, (w, h), swapRB=True)
        sess.run(None, {inp.name: blob})

    frame = np.zeros((576, 768, 3), np.uint8)
    for _ in range(3):
        job(frame)  # warm-up
    start = time.perf_counter()
    n = 10
    for _ in range(n):
        job(frame)
    return job, (time.perf_counter() - start) / n


def run_newest(
    mode: str, clip: Path, fps: float, job: Callable[[np.ndarray], None], seconds: float
) -> Result:
    """The reader under test: paced file camera at `fps`, newest-frame consumer running `job`."""
    signal = FrameSignal()
    cfg = CameraConfig(
        id="bench",
        source=FileSourceConfig(path=clip, loop=True, pace=True, fps=fps),
        stall_timeout_s=60.0,
    )
    reader = CameraReader(cfg, signal)
    group = ReaderGroup([reader], signal)
    group.start()
    ages: list[float] = []
    job_times: list[float] = []
    try:
        first = group.next_frame(timeout=10.0)  # skip the open/first-frame latency
        if first is None:
            raise SystemExit(f"{mode}: no frame from {clip}: {reader.stats().last_error}")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            frame = group.next_frame(timeout=1.0)
            if frame is None:
                continue
            taken = time.monotonic()
            ages.append((taken - frame.captured_mono) * fps)
            job(frame.image)
            job_times.append(time.monotonic() - taken)
        dropped = reader.stats().dropped
    finally:
        group.stop(timeout=2.0)
    return Result(mode, fps, 1000 * statistics.mean(job_times), ages, dropped)


def run_fifo(clip: Path, fps: float, job: Callable[[np.ndarray], None], seconds: float) -> Result:
    """Baseline: a paced file camera feeding an unbounded FIFO; every frame is processed."""
    q: queue.Queue[tuple[float, np.ndarray]] = queue.Queue()
    stop = threading.Event()

    def produce() -> None:
        src = FileSource(FileSourceConfig(path=clip, loop=True, pace=True, fps=fps))
        src.open()
        try:
            while not stop.is_set():
                image = src.read()
                if image is not None:
                    q.put((time.monotonic(), image))
        except EndOfStream:
            pass
        finally:
            src.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    ages: list[float] = []
    job_times: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            captured, image = q.get(timeout=1.0)
        except queue.Empty:
            continue
        taken = time.monotonic()
        ages.append((taken - captured) * fps)
        job(image)
        job_times.append(time.monotonic() - taken)
    stop.set()
    thread.join(timeout=2.0)
    return Result("fifo-sleep", fps, 1000 * statistics.mean(job_times), ages, 0)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def table(results: list[Result]) -> str:
    """Markdown table of the results."""
    lines = [
        "| mode | camera fps | job ms (x interval) | frames taken | dropped by reader "
        "| age p50 | age p95 | age max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r.job_ms / 1000 * r.fps
        lines.append(
            f"| {r.mode} | {r.fps:.1f} | {r.job_ms:.1f} ({ratio:.2f}) | {len(r.ages)} "
            f"| {r.dropped} | {r.pct(50):.2f} | {r.pct(95):.2f} | {max(r.ages):.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=DEMO_CLIP, help="video file to pace")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="ONNX model (onnx mode)")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each mode")
    parser.add_argument("--slowdown", type=float, default=1.5, help="job time / frame interval")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--write-docs", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    if not args.clip.exists():
        parser.error(f"clip not found: {args.clip}")
    if args.seconds <= 0 or args.slowdown <= 0:
        parser.error("--seconds and --slowdown must be > 0")

    cap = cv2.VideoCapture(str(args.clip), cv2.CAP_FFMPEG)
    clip_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    cap.release()
    if clip_fps <= 0:
        parser.error(f"{args.clip} has no fps in its header")
    interval = 1.0 / clip_fps

    results: list[Result] = []
    print(f"newest-sleep: clip fps {clip_fps:g}, job {args.slowdown} x interval", flush=True)
    results.append(
        run_newest(
            "newest-sleep", args.clip, clip_fps, sleep_job(args.slowdown * interval), args.seconds
        )
    )
    if args.model.exists():
        job, infer_s = onnx_job(args.model, args.threads)
        onnx_fps = args.slowdown / infer_s
        print(
            f"newest-onnx: inference {infer_s * 1000:.1f} ms -> camera at {onnx_fps:.1f} fps",
            flush=True,
        )
        results.append(run_newest("newest-onnx", args.clip, onnx_fps, job, args.seconds))
    else:
        print(f"newest-onnx: skipped, no model at {args.model}", flush=True)
    print("fifo-sleep: baseline without the newest-frame policy", flush=True)
    results.append(run_fifo(args.clip, clip_fps, sleep_job(args.slowdown * interval), args.seconds))

    md = table(results)
    print(md)
    if args.write_docs:
        machine = (
            f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, OpenCV {cv2.__version__}"
        )
        section = (
            "\n## Frame age\n\n"
            "Frame age at inference (newest-frame policy) when inference is slower than the "
            "camera, in frame intervals (time the loop takes a frame minus its capture time). "
            "Target: p95 <= 2 (BRIEF.md §6).\n\n"
            f"Command: `python bench/bench_frame_age.py --seconds {args.seconds:g} "
            f"--slowdown {args.slowdown:g} --threads {args.threads}` "
            f"({time.strftime('%Y-%m-%d', time.gmtime())}; {machine}; "
            f"shared with other jobs).\n\n"
            f"{md}\n\n"
            "`newest-*` use `CameraReader` + `ReaderGroup.next_frame` on the demo clip paced "
            "at the camera fps; the reader keeps one frame and counts the ones replaced "
            "unseen as dropped. `fifo-sleep` is the same camera and job without the policy "
            "(every frame queued): its age grows with the run length.\n"
        )
        if DOCS.exists():
            DOCS.write_text(
                DOCS.read_text(encoding="utf-8").rstrip("\n") + "\n" + section, encoding="utf-8"
            )
        else:
            DOCS.write_text(section.lstrip("\n"), encoding="utf-8")
        print(f"appended to {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
