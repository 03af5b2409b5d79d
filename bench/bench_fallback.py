"""Florence-2 fallback benchmark.

1. YOLO frames/s with the fallback saturated / without it, measured in the same run in
   alternating windows (A B A B ...), for the worker as a process and as a thread. YOLO is the
   demo model (engines/demo/model.onnx) on ONNX Runtime with `--yolo-threads`; the fallback
   runs the tiny random Florence-2 with one thread (and nice 10 in process mode); every frame
   is submitted, so the worker never idles.
2. Florence-2 latency per task and runtime on the tiny model (median of --runs).

Usage: python bench/bench_fallback.py [--window 5] [--pairs 3] [--runs 5] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TASKS = (
    "<OD>",
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<OCR_WITH_REGION>",
    "<DENSE_REGION_CAPTION>",
    "<CAPTION>",
)


def yolo_session(threads: int):  # noqa: ANN201
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        str(REPO / "engines/demo/model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    inp = sess.get_inputs()[0]
    x = np.random.RandomState(0).rand(1, 3, *[int(d) for d in inp.shape[2:]]).astype(np.float32)
    return sess, inp.name, x


def run_window(sess, name: str, x: np.ndarray, seconds: float, on_frame=None) -> float:  # noqa: ANN001
    """Frames/s of a session.run loop over `seconds`; `on_frame(i)` runs after each frame."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {name: x})
        if on_frame is not None:
            on_frame(n)
        n += 1
    return n / (time.perf_counter() - t0)


def saturation(mode: str, model: Path, args: argparse.Namespace) -> dict[str, object]:
    from agent.contracts.payloads import DetectionMessage, FrameSize, Latency, ModelRef, rfc3339_ms
    from agent.fallback.config import FallbackConfig
    from agent.fallback.policy import HardFrame
    from agent.fallback.worker import Fallback
    from agent.types import Detections, Frame

    cfg = FallbackConfig.model_validate(
        {
            "enabled": True,
            "model": str(model),
            "runtime": args.runtime,
            "task": "<CAPTION>",
            "worker": mode.split("-")[0],
            "idle_priority": mode.endswith("-idle"),
            "threads": 1,
            "nice": 10,
            "max_new_tokens": 32,
            "rate": {"per_minute": 1e6, "burst": 1000},
            "capture": {"enabled": False},
        }
    )
    published = []
    with tempfile.TemporaryDirectory() as tmp:
        fb = Fallback(cfg, "bench", lambda c, s, p: published.append(s) or True, Path(tmp))
        fb.start()
        deadline = time.monotonic() + 600
        while fb.stats().state != "idle" and time.monotonic() < deadline:
            time.sleep(0.1)
        img = np.random.RandomState(1).randint(0, 255, (576, 768, 3), dtype=np.uint8)
        hard = Detections(
            np.array([[1, 2, 3, 4]], np.float32), np.array([0.4], np.float32), np.array([0])
        )

        def submit(i: int) -> None:
            frame = Frame("cam", img, time.time(), time.monotonic(), i)
            if fb.is_hard("cam", hard, time.monotonic()):
                yolo = DetectionMessage(
                    device="bench",
                    camera="cam",
                    boot_id="00000000000be7c4",
                    seq=i,
                    ts=rfc3339_ms(frame.captured_at),
                    frame=FrameSize(width=768, height=576),
                    model=ModelRef(name="demo", version=1, sha256="0" * 64),
                    source="yolo",
                    latency_ms=Latency(pre=0, infer=0, post=0, total=0),
                    detections=[],
                    hard=True,
                )
                fb.submit(HardFrame(frame, hard, yolo, ("person", "car")))

        sess, name, x = yolo_session(args.yolo_threads)
        run_window(sess, name, x, 1.0)  # warm-up
        base, busy = [], []
        for _ in range(args.pairs):
            base.append(run_window(sess, name, x, args.window, lambda i: None))
            n0 = len(published)
            busy.append(run_window(sess, name, x, args.window, submit))
            busy_jobs = len(published) - n0
        stats = fb.stats()
        fb.stop(10.0)
    ratios = [b / a for a, b in zip(base, busy, strict=True)]
    return {
        "mode": mode,
        "base_fps": statistics.median(base),
        "busy_fps": statistics.median(busy),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "florence_jobs_last_window": busy_jobs,
        "florence_ms": stats.last_latency_ms,
        "errors": stats.errors,
    }


def latencies(model: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from agent.fallback.export import export_onnx, quantize_int8
    from agent.fallback.factory import create_runtime
    from agent.fallback.parse import build_prompt

    tmp = Path(tempfile.mkdtemp())
    export_onnx(model, tmp / "onnx")
    quantize_int8(tmp / "onnx", tmp / "onnx-int8")
    img = np.random.RandomState(2).randint(0, 255, (576, 768, 3), dtype=np.uint8)
    out: dict[str, dict[str, float]] = {}
    for kind, path in (
        ("torch-fp32", model),
        ("torch-int8", model),
        ("onnx-fp32", tmp / "onnx"),
        ("onnx-int8", tmp / "onnx-int8"),
    ):
        rt = create_runtime(kind, threads=1)  # type: ignore[arg-type]
        rt.load(path)
        out[kind] = {}
        for task in TASKS:
            prompt = build_prompt(task, ("person", "car"))
            times = []
            for _ in range(args.runs):
                g = rt.generate(img, prompt, 32)
                times.append(g.pre_ms + g.infer_ms)
            out[kind][task] = statistics.median(times)
        rt.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=5.0, help="Seconds per measurement window.")
    p.add_argument("--pairs", type=int, default=3, help="Base/busy window pairs per mode.")
    p.add_argument("--runs", type=int, default=5, help="Generations per task and runtime.")
    p.add_argument(
        "--yolo-threads", type=int, default=1, help="ONNX Runtime threads of the YOLO loop."
    )
    p.add_argument(
        "--runtime", default="torch-fp32", help="Fallback runtime in the saturation test."
    )
    p.add_argument("--modes", default="process,process-idle,thread")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    from tests.fallback.tiny_florence import cached_tiny_florence

    model = cached_tiny_florence()
    sat = [saturation(m, model, args) for m in args.modes.split(",")]
    lat = latencies(model, args)
    if not args.markdown:
        print(sat)
        print(lat)
        return
    print(
        "| worker | YOLO fps alone | YOLO fps, fallback saturated "
        "| ratio (median of pairs) | pair ratios |"
    )
    print("|---|---|---|---|---|")
    for s in sat:
        print(
            f"| {s['mode']} | {s['base_fps']:.1f} | {s['busy_fps']:.1f} | **{s['ratio']:.2f}** | "
            + ", ".join(f"{r:.2f}" for r in s["ratios"])
            + " |"
        )
    print()
    print("| runtime | " + " | ".join(TASKS) + " |")
    print("|---|" + "---|" * len(TASKS))
    for kind, per in lat.items():
        print(f"| {kind} | " + " | ".join(f"{per[t]:.0f} ms" for t in TASKS) + " |")


if __name__ == "__main__":
    main()
