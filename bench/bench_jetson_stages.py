"""Per-stage cost of the frame path on a Jetson: where the milliseconds around the engine go.

Stages, each in ms per frame (median and p95 over the measured frames):

  decode     reading the next frame from the source (a GStreamer pipeline or a video file)
  letterbox  resize + pad + CHW float tensor (CPU, `agent.engines.yolo.Letterboxer`)
  h2d        host -> device copy of the input (CUDA events; ~0 with zero-copy on Tegra)
  engine     TensorRT execute_async_v3 (CUDA events)
  d2h        device -> host copy of the outputs (CUDA events; ~0 with zero-copy)
  infer      wall time of the whole engine call as the pipeline sees it (incl. sync)
  decode_nms YOLO decoding, NMS and scaling back to frame pixels (CPU)
  publish    building and serialising the detection message (what the pipeline hands to
             the MQTT client; the network send is asynchronous and not in the frame path)

Needs a CUDA device with TensorRT 10, pycuda and cuda-python; elsewhere it exits with the
reason (code 2). Run on the device, in the power mode you deploy, with `jetson_clocks`:

    CSI="nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,\
    framerate=30/1,format=NV12 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! \
    video/x-raw,format=BGR ! appsink drop=1 max-buffers=1 sync=false"
    python3 bench/bench_jetson_stages.py \
        --engine /var/lib/edge-agent/engines/model-*-fp16.engine \
        --manifest /usr/local/share/edge-agent/models/demo/manifest.json \
        --source "$CSI" --frames 300

`--source` is a GStreamer pipeline ending in appsink, or a video file (default: the demo
clip, decoded by FFmpeg on the CPU). Prints one JSON object; docs/jetson.md §5 says what
to send back.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from agent.contracts.payloads import dump_payload  # noqa: E402
from agent.engines.base import EngineError  # noqa: E402
from agent.engines.detector import Detector  # noqa: E402
from agent.engines.model_loading import load_manifest  # noqa: E402
from agent.engines.trt import TensorRTConfig, TensorRTEngine  # noqa: E402
from agent.engines.trt_runtime import probe_platform  # noqa: E402
from agent.engines.yolo import Letterboxer, decode  # noqa: E402
from agent.pipeline import PipelineSettings, build_message  # noqa: E402
from agent.types import Frame, ModelInfo, Timings  # noqa: E402

DEMO = REPO / "engines" / "demo"
STAGES = ("decode", "letterbox", "h2d", "engine", "d2h", "infer", "decode_nms", "publish")


def open_source(source: str) -> cv2.VideoCapture:
    """A GStreamer pipeline (contains '!') or a video file."""
    if "!" in source:
        cap = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    else:
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SystemExit(f"cannot open source {source!r} (GStreamer in this OpenCV?)")
    return cap


def frames(cap: cv2.VideoCapture, source: str, timed: dict[str, list[float]]) -> Iterator[Any]:
    """Frames from `cap`, timing each read; a file is reopened at its end."""
    while True:
        t0 = time.perf_counter()
        ok, image = cap.read()
        if not ok and "!" not in source:
            cap.release()
            cap = open_source(source)
            continue
        if not ok:
            raise SystemExit("the pipeline stopped delivering frames")
        timed["decode"].append((time.perf_counter() - t0) * 1e3)
        yield image


def one_frame(
    image: Any,
    detector: Detector,
    letterbox: Letterboxer,
    timed: dict[str, list[float]],
    seq: int,
) -> None:
    """Run the pipeline's stages on one frame, appending each stage's ms to `timed`."""
    clock: Callable[[], float] = time.perf_counter
    t0 = clock()
    engine, info = detector.engine, detector.info
    if not isinstance(engine, TensorRTEngine):
        raise SystemExit("the stage benchmark needs the TensorRT engine")
    tensor, lb = letterbox(image)
    t1 = clock()
    outputs, gpu = engine.infer_timed(tensor)
    t2 = clock()
    dets = decode(
        outputs, detector.layout, len(info.class_names), lb, image.shape[:2], detector.params
    )
    t3 = clock()
    now = time.time()
    frame = Frame("bench", image, now, time.monotonic(), seq)
    timings = Timings(pre=(t1 - t0) * 1e3, infer=(t2 - t1) * 1e3, post=(t3 - t2) * 1e3)
    settings = PipelineSettings(device="bench", boot_id="bench")
    dump_payload(build_message(settings, frame, seq, dets, timings, info, False))
    t4 = clock()
    for name, ms in (
        ("letterbox", (t1 - t0) * 1e3),
        ("infer", (t2 - t1) * 1e3),
        ("decode_nms", (t3 - t2) * 1e3),
        ("publish", (t4 - t3) * 1e3),
        *gpu.items(),
    ):
        timed[name].append(ms)


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95 in ms."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median": round(statistics.median(ordered), 3), "p95": round(p95, 3)}


def load(engine_path: Path, manifest_path: Path) -> tuple[TensorRTEngine, Detector, ModelInfo]:
    """The engine and a Detector over it, identified by the manifest."""
    manifest = load_manifest(manifest_path)
    engine = TensorRTEngine(TensorRTConfig(), input_hw=manifest.input_size)
    io = engine.load(engine_path)
    info = ModelInfo(
        manifest.name,
        manifest.version,
        manifest.sha256,
        (int(manifest.input_size[0]), int(manifest.input_size[1])),
        tuple(manifest.class_names),
    )
    return engine, Detector(engine, io, info), info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", type=Path, required=True, help="TensorRT engine file.")
    parser.add_argument("--manifest", type=Path, default=DEMO / "manifest.json")
    parser.add_argument("--source", default=str(DEMO / "clip.mp4"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    try:
        here = probe_platform(0)
        _, detector, info = load(args.engine, args.manifest)
    except EngineError as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 2
    timed: dict[str, list[float]] = {s: [] for s in STAGES}
    cap = open_source(args.source)
    letterbox = Letterboxer(info.input_size)
    try:
        for seq, image in enumerate(frames(cap, args.source, timed)):
            if seq == args.warmup:
                timed = {s: [] for s in STAGES}
            if seq >= args.warmup + args.frames:
                break
            one_frame(image, detector, letterbox, timed, seq)
    finally:
        cap.release()
        detector.close()
    shape = detector.io.inputs[0].shape
    report = {
        "platform": here.model_dump(),
        "machine": platform.machine(),
        "nv_tegra_release": _read("/etc/nv_tegra_release"),
        "engine": str(args.engine),
        "input": list(shape),
        "source": args.source,
        "frames": args.frames,
        "ms": {s: summary(v) for s, v in timed.items() if v},
    }
    print(json.dumps(report, indent=2))
    return 0


def _read(path: str) -> str | None:
    """First line of a file, or None."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return None


if __name__ == "__main__":
    sys.exit(main())
