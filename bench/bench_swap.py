"""Hot-swap benchmark: the gap a model swap leaves in the published stream, side by side.

One run of the real inference loop (`agent.pipeline.Pipeline`) on frames of the demo clip,
delivered by a clock-driven camera at `--fps` with the newest-frame policy (a frame that is
replaced before the loop takes it is dropped and counted). In the same run, alternating:

  hot    - what the OTA manager does in `swap_mode: hot`: load + warm the other model beside
           the running one and run it on 3 recent frames (on a thread at `--loader-nice`, as
           the OTA job thread), swap between two frames, close the old
  stop   - the stop-then-load baseline (`swap_mode: pause`): pause the loop, close the old
           model, load the new one, swap, resume

Reported per mode: camera frames dropped during the swap windows, and the longest gap between
two published frames around a swap, in ms and as a multiple of the normal interval (median
gap away from swaps). Target (BRIEF.md §6): hot has 0 dropped and a gap <= 1.5 x interval.

Usage:
    python bench/bench_swap.py [--swaps 3] [--fps 10] [--threads 1] [--markdown]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.contracts.manifest import Manifest  # noqa: E402
from agent.engines.detector import Detector, load_detector  # noqa: E402
from agent.engines.model_loading import load_manifest  # noqa: E402
from agent.engines.ort import OnnxRuntimeConfig  # noqa: E402
from agent.ota.priority import lowered_priority  # noqa: E402
from agent.pipeline import Pipeline, PipelineSettings  # noqa: E402
from agent.types import Frame  # noqa: E402

DEMO = REPO / "engines" / "demo"


class ClockCamera:
    """Frame k is captured at t0 + k / fps; `next_frame` returns the newest one not yet taken
    (newest-frame policy) and counts the ones that were replaced unseen."""

    def __init__(self, images: list[np.ndarray], fps: float) -> None:
        self.images = images
        self.interval = 1.0 / fps
        self.t0 = time.monotonic()
        self.last = -1
        self.dropped_at: list[float] = []  # monotonic time of each dropped frame

    def next_frame(self, timeout: float) -> Frame | None:
        now = time.monotonic()
        newest = int((now - self.t0) / self.interval)
        if newest <= self.last:
            wait = self.t0 + (self.last + 1) * self.interval - now
            if wait > timeout:
                time.sleep(timeout)
                return None
            time.sleep(max(wait, 0.0))
            newest = self.last + 1
        for k in range(self.last + 1, newest):
            self.dropped_at.append(self.t0 + k * self.interval)
        self.last = newest
        cap = self.t0 + newest * self.interval
        img = self.images[newest % len(self.images)]
        return Frame("cam", img, time.time(), cap, newest)


@dataclass
class Window:
    mode: str
    start: float
    end: float


def frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(DEMO / "clip.mp4"))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    return out


def variant(src: Path, dst: Path) -> Path:
    """The demo model with one more metadata entry: same network, another sha256."""
    import onnx

    model = onnx.load(str(src))
    model.metadata_props.append(onnx.StringStringEntryProto(key="bench", value="v2"))
    onnx.save(model, str(dst))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--swaps", type=int, default=3, help="swaps per mode")
    ap.add_argument("--fps", type=float, default=10.0, help="camera frame rate")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between swaps")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--debug", action="store_true", help="where each window's gap falls")
    ap.add_argument(
        "--loader-nice",
        type=int,
        default=10,
        help="niceness of hot-swap preparation, as OtaManager(loader_nice=)",
    )
    args = ap.parse_args()

    import hashlib

    base = load_manifest(DEMO / "manifest.json")
    tmp = Path(tempfile.mkdtemp(prefix="bench-swap-"))
    v2 = variant(DEMO / "model.onnx", tmp / "v2.onnx")
    data = v2.read_bytes()
    m2 = base.model_copy(
        update={"version": 2, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
    )
    models: list[tuple[Path, Manifest]] = [(DEMO / "model.onnx", base), (v2, m2)]
    engine = OnnxRuntimeConfig(threads=args.threads)

    def load(path: Path, manifest: Manifest | None) -> Detector:
        return load_detector(path, engine, manifest=manifest)

    published: list[tuple[float, int, int]] = []  # (monotonic, seq, version)
    lock = threading.Lock()

    def submit(camera: str, seq: int, payload: bytes) -> bool:
        import json

        v = json.loads(payload)["model"]["version"]
        with lock:
            published.append((time.monotonic(), seq, v))
        return True

    camera = ClockCamera(frames(100), args.fps)
    pipe = Pipeline(
        PipelineSettings(device="bench", boot_id="000000000000000b"),
        camera,
        load(*models[0]),
        submit,
        load,
    )
    pipe.start()
    time.sleep(args.settle)
    windows: list[Window] = []
    which = 1
    for i in range(args.swaps * 2):
        path, manifest = models[which]
        mode = "hot" if i % 2 == 0 else "stop"
        t0 = time.monotonic()
        if mode == "hot":
            # on a worker thread, like the OTA job thread (niceness is per thread)
            prepared: list[Detector] = []

            def prepare(
                path: Path = path, manifest: Manifest = manifest, out: list = prepared
            ) -> None:
                with lowered_priority(args.loader_nice):
                    new = pipe.load_detector(path, manifest)
                    for f in pipe.recent_frames(3):
                        new.detect(f.image)
                out.append(new)

            worker = threading.Thread(target=prepare)
            worker.start()
            worker.join()
            pipe.swap(prepared[0], 10.0)  # the pipeline closes the old detector
        else:
            pipe.pause()
            pipe.unload()
            new = pipe.load_detector(path, manifest)
            pipe.swap(new, 10.0)
            pipe.resume()
        windows.append(Window(mode, t0, time.monotonic()))
        which = 1 - which
        time.sleep(args.settle)
        if mode == "hot":  # control: a window as long as the hot one, with no swap work
            span = windows[-1].end - windows[-1].start
            t0 = time.monotonic()
            time.sleep(span)
            windows.append(Window("none", t0, time.monotonic()))
            time.sleep(args.settle)
    pipe.stop(5.0)  # closes the active detector

    times = [t for t, _, _ in published]
    seqs = [s for _, s, _ in published]
    assert seqs == list(range(len(seqs))), "seq gap in published frames"
    gaps = list(zip(times, times[1:], strict=False))
    interval = 1.0 / args.fps

    def near(a: float, b: float) -> Window | None:
        for w in windows:
            if b >= w.start and a <= w.end + interval:
                return w
        return None

    normal = statistics.median([b - a for a, b in gaps if near(a, b) is None])
    swap_s = sum(w.end - w.start + 2 * interval for w in windows)
    span = times[-1] - times[0]
    in_any = sum(
        any(w.start - interval <= d <= w.end + interval for w in windows) for d in camera.dropped_at
    )
    away_rate = (len(camera.dropped_at) - in_any) / max(span - swap_s, 1e-9)
    rows = []
    for mode in ("none", "hot", "stop"):
        ws = [w for w in windows if w.mode == mode]
        longest = max(b - a for a, b in gaps if near(a, b) in ws)
        if args.debug:
            for w in ws:
                g = [(b - a, a - w.end) for a, b in gaps if near(a, b) is w]
                top = max(g)
                print(
                    f"{mode}: longest {top[0] * 1e3:.0f} ms starting {top[1] * 1e3:+.0f} ms "
                    f"from the swap; window {1e3 * (w.end - w.start):.0f} ms"
                )
        dropped = sum(
            any(w.start - interval <= d <= w.end + interval for w in ws) for d in camera.dropped_at
        )
        busy = statistics.median(w.end - w.start for w in ws) if mode != "none" else 0.0
        rows.append((mode, len(ws), dropped, busy * 1e3, longest * 1e3, longest / normal))
    versions = [v for _, _, v in published]
    switches = sum(1 for a, b in zip(versions, versions[1:], strict=False) if a != b)

    when = time.strftime("%Y-%m-%d")
    cmd = " ".join(["python", "bench/bench_swap.py", *sys.argv[1:]])
    print(
        f"Command: `{cmd}` ({when}; {platform.machine()}, {platform.python_version()}, "
        f"{len(published)} frames published, {switches} model switches, every seq present)"
    )
    print()
    print(
        f"Normal interval between published frames: {normal * 1e3:.1f} ms "
        f"(camera {args.fps:g} fps); away from swaps the reader dropped "
        f"{away_rate:.2f} frames/s."
    )
    print()
    print(
        "| mode | swaps | camera frames dropped in swap windows | swap work ms (median) | "
        "longest gap ms | gap / normal interval |"
    )
    print("|---|---|---|---|---|---|")
    for mode, n, dropped, busy, longest, ratio in rows:
        print(f"| {mode} | {n} | {dropped} | {busy:.0f} | {longest:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
