"""Tracker quality on synthetic scenes with known ground truth, and per-frame cost.

Quality: every scene of `bench/tracking_scenes.py` (crossing paths, occlusion, missed
detections, 60 px/frame fast objects, jittered boxes, a crowd) is fed frame by frame to each
tracker; `motmetrics` scores the result against the ground truth (IoU >= 0.5 match): IDF1,
MOTA and ID switches. Trackers side by side in one run: `trackers`' SORT, ByteTrack, OC-SORT,
BoT-SORT (no camera-motion compensation: the scenes have no frames) and C-BIoU, all with their
defaults at the scene's fps, and ours through our `Tracker` interface with the default
`tracking:` config: the builtin ByteTrack (`agent.tracking.bytetrack.BuiltinTracker`, the
default `tracking.implementation`) and the adapter on `trackers`' ByteTrack
(`agent.tracking.tracker.ByteTracker`, `implementation: trackers`).

Cost: ms per `update` (median and p95 over the frames after 10 warm-up frames, including the
conversion into the tracker's detection type) at 10/50/200 objects, pinned to one core with
one BLAS/OpenMP thread. Target: <= 1 ms at 50 objects.

Usage:
    python bench/bench_tracking.py [--cost-frames 150] [--write-docs]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: set before numpy loads its BLAS

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Protocol  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from docs_section import replace_section  # noqa: E402  (bench/ is the script's dir)
from tracking_scenes import FrameData, Scene, cost_scene, iou_matrix, render, scenes  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Tracking"
COST_SIZES = (10, 50, 200)


READING = [
    "Reading: a scene where `trackers`' ByteTrack stays below IDF1 0.95 is one the trackers "
    "do not all ace (occlusion, missed, jitter, crowd here). Both of ours run the same "
    "ByteTrack with our `tracking:` defaults (`lost_track_frames` 20 processed frames instead "
    "of the library's 1 s, `min_hits` 3 instead of 2, our thresholds): they keep ids through "
    "the 1.7 s behind the pillar and confirm fast objects a frame later. The builtin one gives "
    "the adapter's ids on every box of every scene (same algorithm, same Kalman tuning; "
    "`tests/tracking/test_bytetrack.py` checks it on a scene of its own), hence identical "
    "scores. Missed detections stay misses for every tracker (none reports unmatched "
    "predictions), hence the low MOTA of `missed`. Cost: the `trackers` trackers spend most "
    "of their time in a per-track Kalman update in Python (`trackers.utils.kalman_filter."
    "update`, one `np.linalg.inv` per track per frame, a cProfile of the 50-object case), so "
    "their time grows with the objects and none meets 1 ms at 50 objects on this CPU. The "
    "builtin one keeps a camera's tracks as arrays: the Kalman filter is closed-form over all "
    "tracks at once (every covariance is the same 2x2 block per coordinate, so no inverse), "
    "the IoU matrix is one array expression and the assignment is scipy's; at 200 objects the "
    "dense 200x200 IoU matrices and the assignment dominate.",
]


class Runner(Protocol):
    """One tracker on one scene: boxes of a frame in, one id per box out (-1: none)."""

    def __call__(self, xyxy: np.ndarray, confidence: np.ndarray, ts: float) -> np.ndarray: ...


def library_runner(cls_name: str, fps: float, **kwargs: Any) -> Runner:
    """A `trackers` tracker by class name, its defaults at `fps`, ids aligned with the input."""
    import supervision as sv
    import trackers

    tracker = getattr(trackers, cls_name)(frame_rate=fps, **kwargs)

    def run(xyxy: np.ndarray, confidence: np.ndarray, ts: float) -> np.ndarray:
        n = len(xyxy)
        dets = sv.Detections(
            xyxy=xyxy,
            confidence=confidence,
            class_id=np.zeros(n, np.int64),
            data={"index": np.arange(n)},
        )
        out = tracker.update(dets)
        ids = np.full(n, -1, np.int64)
        if len(out):
            ids[out.data["index"]] = out.tracker_id
        return ids

    return run


def ours_runner(fps: float, implementation: str) -> Runner | None:
    """One of our trackers through our `Tracker` interface (default `tracking:` config)."""
    from agent.tracking.build import make_tracker
    from agent.tracking.config import TrackingConfig
    from agent.types import Detections

    tracker = make_tracker(TrackingConfig(enabled=True, implementation=implementation))

    def run(xyxy: np.ndarray, confidence: np.ndarray, ts: float) -> np.ndarray:
        dets = Detections(xyxy, confidence, np.zeros(len(xyxy), np.int64))
        ids = tracker.update("bench", dets)
        return np.array([-1 if i is None else i for i in ids], np.int64)

    return run


def runners(fps: float) -> dict[str, Callable[[], Runner | None]]:
    """Fresh-tracker factories by display name."""
    return {
        "ours (builtin ByteTrack)": lambda: ours_runner(fps, "builtin"),
        "ours (ByteTracker adapter)": lambda: ours_runner(fps, "trackers"),
        "trackers ByteTrack": lambda: library_runner("ByteTrackTracker", fps),
        "trackers SORT": lambda: library_runner("SORTTracker", fps),
        "trackers OC-SORT": lambda: library_runner("OCSORTTracker", fps),
        "trackers BoT-SORT (no CMC)": lambda: library_runner(
            "BoTSORTTracker", fps, enable_cmc=False
        ),
        "trackers C-BIoU": lambda: library_runner("CBIoUTracker", fps),
    }


def score(frames: list[FrameData], runner: Runner, fps: float) -> dict[str, float]:
    """IDF1, MOTA and ID switches of `runner` on `frames` (motmetrics, IoU >= 0.5)."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for f, data in enumerate(frames):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids = runner(data.xyxy, data.confidence, f / fps)
        keep = ids >= 0
        hyp = data.xyxy[keep]
        iou = iou_matrix(data.gt_xyxy, hyp)
        dist = np.where(iou >= 0.5, 1.0 - iou, np.nan)  # motmetrics: NaN = may not match
        acc.update(data.gt_ids, ids[keep].tolist(), dist)
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "mota", "num_switches"], name="x")
    row = summary.loc["x"]
    return {"idf1": float(row["idf1"]), "mota": float(row["mota"]), "ids": int(row["num_switches"])}


def cost_ms(frames: list[FrameData], runner: Runner, fps: float) -> tuple[float, float, float]:
    """Per update after 10 warm-up frames: median CPU ms of this thread (what the update
    costs, unaffected by other processes taking the core), median and p95 wall ms."""
    wall, cpu = [], []
    for f, data in enumerate(frames):
        t0, c0 = time.perf_counter(), time.thread_time()
        runner(data.xyxy, data.confidence, f / fps)
        if f >= 10:
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
    wall.sort()
    return statistics.median(cpu), statistics.median(wall), wall[int(0.95 * (len(wall) - 1))]


@dataclass
class Results:
    quality: dict[str, dict[str, dict[str, float]]]  # scene -> tracker -> metrics
    cost: dict[str, dict[int, tuple[float, float, float]]]  # tracker -> objects -> ms
    scenes: list[Scene]


def measure(cost_frames: int) -> Results:
    """Run every tracker on every scene, then the cost scenes; progress on stderr."""
    quality: dict[str, dict[str, dict[str, float]]] = {}
    all_scenes = scenes()
    for scene in all_scenes:
        frames = render(scene)
        quality[scene.name] = {}
        for name, make in runners(scene.fps).items():
            runner = make()
            if runner is not None:
                quality[scene.name][name] = score(frames, runner, scene.fps)
        print(f"scored {scene.name}", file=sys.stderr, flush=True)
    cost: dict[str, dict[int, tuple[float, float, float]]] = {}
    for n in COST_SIZES:
        scene = cost_scene(n, cost_frames)
        frames = render(scene)
        for name, make in runners(scene.fps).items():
            runner = make()
            if runner is not None:
                cost.setdefault(name, {})[n] = cost_ms(frames, runner, scene.fps)
        print(f"timed {n} objects", file=sys.stderr, flush=True)
    return Results(quality, cost, all_scenes)


def quality_table(res: Results) -> list[str]:
    names = list(next(iter(res.quality.values())))
    head = "| scene | " + " | ".join(names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for scene, row in res.quality.items():
        cells = [f"{row[n]['idf1']:.3f} / {row[n]['mota']:.3f} / {row[n]['ids']}" for n in names]
        lines.append(f"| {scene} | " + " | ".join(cells) + " |")
    return lines


def cost_table(res: Results) -> list[str]:
    lines = ["| tracker | " + " | ".join(f"{n} objects" for n in COST_SIZES) + " |"]
    lines.append("|---|" + "---|" * len(COST_SIZES))
    for name, row in res.cost.items():
        cells = [f"{row[n][0]:.2f} / {row[n][1]:.2f} ({row[n][2]:.2f})" for n in COST_SIZES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(res: Results, command: str, load_start: float) -> str:
    from importlib.metadata import version

    machine = (
        f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores (pinned to one), "
        f"Python {platform.python_version()}, trackers {version('trackers')}, "
        f"motmetrics {version('motmetrics')}"
    )
    scene_lines = [
        f"- `{s.name}` ({s.frames} frames at {s.fps:g} fps): {s.about}" for s in res.scenes
    ]
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` ({time.strftime('%Y-%m-%d', time.gmtime())}; {machine}; "
            "a 2-core VM shared with other engineers' jobs, 1-minute load average "
            f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end of the run, "
            "so wall times are noisy; the CPU times less so).",
            "",
            "Synthetic scenes with known ground truth (`bench/tracking_scenes.py`, seeded):",
            "",
            *scene_lines,
            "",
            "Quality, IDF1 / MOTA / ID switches (motmetrics, IoU >= 0.5; higher, higher, lower "
            "is better). Every tracker with its defaults at the scene's fps; ours with the "
            "default `tracking:` config (`implementation: builtin` and `trackers`):",
            "",
            *quality_table(res),
            "",
            "Cost, ms per frame (`update` including the conversion to the tracker's detection "
            "type), one core, one BLAS thread: CPU time median / wall median (wall p95). The "
            "CPU time is what the update costs; the wall time adds waiting for the shared core. "
            "Target: <= 1 ms at 50 objects:",
            "",
            *cost_table(res),
            "",
            *READING,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cost-frames", type=int, default=150, help="frames per cost scene")
    ap.add_argument("--cpu", type=int, default=0, help="core to pin to (Linux)")
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    load_start = os.getloadavg()[0]
    res = measure(args.cost_frames)
    command = f"python bench/bench_tracking.py --cost-frames {args.cost_frames}"
    body = report(res, command, load_start)
    print(body)
    if args.write_docs:
        replace_section(DOCS, SECTION, body)
        print(f"wrote {SECTION!r} in {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
