"""Batching and pipelined stages: the inference loop against raw `session.run`, one run.

Side by side, interleaved in rounds (a b c d e, a b c d e, ...), same model, threads and
frames (demo clip, decoded once: camera decode is not measured here, see bench_daemon):

  (a) raw `session.run` batch 1 on pre-letterboxed tensors: frames/s
  (b) raw `session.run` batch N on pre-letterboxed tensors (N frames stacked): frames/s
  (c) serial loop: `Detector.detect` + message build on one thread (the loop before the
      stages were split): frames/s
  (d) `Pipeline` with N cameras, batch.max 1: frames/s (messages handed to `submit`)
  (e) `Pipeline` with N cameras, batch.max N: frames/s

The cameras are an in-memory FrameFeed whose every camera always has a new frame (a
camera faster than the engine); the model is the demo model with a dynamic batch axis
(engines/recipes/dynamic_batch.py; its rows equal the static model's bit for bit).

Usage:
    python bench/bench_batching.py [--cameras 4] [--threads 2] [--seconds 3] [--rounds 3]
        [--write]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clip import read_frames  # noqa: E402  (bench/ is the script's dir)
from docs_section import replace_section  # noqa: E402

from agent.contracts.payloads import dump_payload  # noqa: E402
from agent.engines.detector import Detector, load_detector  # noqa: E402
from agent.engines.model_loading import file_sha256, load_manifest  # noqa: E402
from agent.engines.ort import OnnxRuntimeConfig  # noqa: E402
from agent.engines.yolo import Letterboxer  # noqa: E402
from agent.pipeline import Pipeline, PipelineSettings, build_message  # noqa: E402
from agent.stages.config import BatchConfig  # noqa: E402
from agent.types import Frame  # noqa: E402

SECTION = "## Batching and pipelined stages"
SETTINGS = PipelineSettings("bench", "b007b007")
NOTES = """How to read it:
- (c) is the loop before the stages were split (pre, infer, post on one thread); (d) and (e)
  overlap letterbox and decode/publish with the engine call on two more threads. On a GPU
  that overlap hides the host work; on this 2-core CPU it only pays when the engine leaves a
  core free (1 intra-op thread). With 2 intra-op threads on 2 cores the stage threads take CPU
  from ONNX Runtime's (spinning) workers, so (d)/(a) can fall below (c)/(a); the daemon's
  `spin` setting (bench_daemon.py) and the load of the machine move this most.
- Batching on the CPU gives no more frames/s per frame than batch 1 at 320x320 (compare (b)
  and (a)): ONNX Runtime already fills the cores with one image. Batching is for the GPU
  (TensorRT profile 1..max), where one call of N frames costs far less than N calls.
- Figures taken on a shared machine are noisy (see the load averages); compare ratios within
  one run only.
"""


class MemoryCameras:
    """A FrameFeed of `n` cameras that always have a new frame (round robin)."""

    def __init__(self, frames: list[np.ndarray], n: int) -> None:
        self._frames = frames
        self._cams = [f"cam-{i}" for i in range(n)]
        self._next = 0
        self._index = 0

    def next_frame(self, timeout: float) -> Frame | None:
        cam = self._cams[self._next % len(self._cams)]
        self._next += 1
        self._index += 1
        image = self._frames[self._index % len(self._frames)]
        now = time.time()
        return Frame(cam, image, now, time.monotonic(), self._index)


def dynamic_model(out_dir: Path) -> tuple[Path, object]:
    """The demo model with a dynamic batch axis, and a manifest for it."""
    spec = importlib.util.spec_from_file_location(
        "dynamic_batch", REPO / "engines/recipes/dynamic_batch.py"
    )
    assert spec is not None and spec.loader is not None
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    model = onnx.load(str(REPO / "engines/demo/model.onnx"))
    recipe.free_batch(model)
    path = out_dir / "model-dynamic.onnx"
    onnx.save(model, str(path))
    manifest = load_manifest(REPO / "engines/demo/manifest.json").model_copy(
        update={"sha256": file_sha256(path), "length": path.stat().st_size}
    )
    return path, manifest


def timed(run: Callable[[], int], seconds: float) -> float:
    """Frames per second of repeated `run()` calls (each returns frames done) for `seconds`."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += run()
    return done / (time.perf_counter() - start)


def raw(detector: Detector, tensors: list[np.ndarray], batch: int, seconds: float) -> float:
    session = detector.engine.session  # type: ignore[attr-defined]
    name = session.get_inputs()[0].name
    stacked = np.ascontiguousarray(np.concatenate(tensors[:batch]))
    return timed(lambda: len(session.run(None, {name: stacked})[0]), seconds)


def serial(detector: Detector, frames: list[np.ndarray], seconds: float) -> float:
    state = {"i": 0}

    def one() -> int:
        state["i"] += 1
        image = frames[state["i"] % len(frames)]
        dets, timings = detector.detect(image)
        frame = Frame("cam-0", image, time.time(), time.monotonic(), state["i"])
        msg = build_message(SETTINGS, frame, state["i"], dets, timings, detector.info, False)
        dump_payload(msg)
        return 1

    return timed(one, seconds)


def pipelined(detector: Detector, feed: MemoryCameras, batch: int, seconds: float) -> float:
    """Messages per second out of a running Pipeline (after a 0.5 s warm-up)."""
    count = [0]
    lock = threading.Lock()

    def submit(_camera: str, _seq: int, _payload: bytes) -> bool:
        with lock:
            count[0] += 1
        return True

    pipe = Pipeline(
        SETTINGS, feed, detector, submit, lambda *_a: None, batch=BatchConfig(max=batch)
    )
    pipe.start()
    time.sleep(0.5)
    with lock:
        start_count, start = count[0], time.perf_counter()
    time.sleep(seconds)
    with lock:
        n, elapsed = count[0] - start_count, time.perf_counter() - start
    pipe.stop(10)  # closes the detector: the pipeline owns it
    return n / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--threads", default="1,2", help="intra-op threads, one table each")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help=f"write '{SECTION}' to the docs")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    frames = read_frames(REPO / "engines/demo/clip.mp4", 40)
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        path, manifest = dynamic_model(Path(tmp))
        for threads in (int(t) for t in args.threads.split(",")):
            before = os.getloadavg()
            results = run_all(args, frames, path, manifest, threads)
            tables.append(report(args, threads, results, before, os.getloadavg()))
    body = "\n".join([SECTION, "", *tables, NOTES])
    print(body)
    if args.write:
        replace_section(REPO / "docs/benchmarks.md", SECTION, body)
    return 0


def run_all(
    args: argparse.Namespace, frames: list[np.ndarray], path: Path, manifest: object, threads: int
) -> dict[str, list[float]]:
    """Every contender once per round, interleaved; frames/s per round."""
    config = OnnxRuntimeConfig(threads=threads)
    n = args.cameras

    def load() -> Detector:
        return load_detector(path, config, manifest=manifest)  # type: ignore[arg-type]

    tensors = [Letterboxer((320, 320))(f)[0].copy() for f in frames[:n]]
    results: dict[str, list[float]] = {k: [] for k in "abcde"}
    for _ in range(args.rounds):
        with load() as det:
            results["a"].append(raw(det, tensors, 1, args.seconds))
            results["b"].append(raw(det, tensors, n, args.seconds))
            results["c"].append(serial(det, frames, args.seconds))
        feed = MemoryCameras(frames, n)
        results["d"].append(pipelined(load(), feed, 1, args.seconds))
        results["e"].append(pipelined(load(), feed, n, args.seconds))
    return results


def report(
    args: argparse.Namespace,
    threads: int,
    results: dict[str, list[float]],
    before: tuple[float, float, float],
    after: tuple[float, float, float],
) -> str:
    med = {k: statistics.median(v) for k, v in results.items()}
    n = args.cameras
    rows = [
        ("(a) raw session.run, batch 1", med["a"], results["a"]),
        (f"(b) raw session.run, batch {n}", med["b"], results["b"]),
        ("(c) serial loop (detect + message, one thread)", med["c"], results["c"]),
        (f"(d) Pipeline, {n} cameras, batch.max 1", med["d"], results["d"]),
        (f"(e) Pipeline, {n} cameras, batch.max {n}", med["e"], results["e"]),
    ]
    lines = [
        f"### {threads} intra-op thread(s)",
        "",
        f"`python bench/bench_batching.py --cameras {n} --threads {threads} "
        f"--seconds {args.seconds:g} --rounds {args.rounds}`: demo model with a dynamic batch "
        "axis, 320x320, ONNX Runtime CPU, "
        f"{threads} intra-op thread(s), {os.cpu_count()} cores; contenders interleaved "
        "per round, medians. Cameras are in memory (always a new frame, no decode). "
        f"Load average {before[0]:.2f} before, {after[0]:.2f} after.",
        "",
        "| setup | frames/s (median) | rounds |",
        "|---|---|---|",
    ]
    for name, value, values in rows:
        lines.append(f"| {name} | {value:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    lines += [
        "",
        f"- Pipeline batch 1 / raw batch 1: {med['d'] / med['a']:.2f}; serial loop / raw "
        f"batch 1: {med['c'] / med['a']:.2f}.",
        f"- Pipeline batch {n} / raw batch {n}: {med['e'] / med['b']:.2f}; Pipeline batch "
        f"{n} / raw batch 1: {med['e'] / med['a']:.2f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
