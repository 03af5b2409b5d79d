"""Cost of tracking + events on the inference path, as a ratio of pipeline fps, in one run.

On the demo model and clip (frames decoded beforehand), interleaved in turns of `--chunk`
frames with the order alternated each turn:

- **(a)** the pipeline's per-frame work without tracking: `Detector.detect`, `build_message`,
  `dump_payload`;
- **(b)** the same plus `TrackingStage.on_result` as the daemon wires it (the tracker
  `tracking.implementation` names, our builtin ByteTrack by default; the event state machine
  with the demo config's zone and line, event messages serialised and handed to
  a no-op submit, retained counts to a no-op publish, the open-event file written atomically
  under a temporary state dir; with `snapshots.enabled` the best-frame snapshots too, their
  JPEGs encoded and written by the snapshot writer thread under that state dir).

Prints fps of both, their ratio, and the stage's own cost per frame (mean, p50, p99). Nothing
is asserted. `python bench/bench_events_cost.py --frames 120 --rounds 3`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

from agent.config import AgentConfig, load_config
from agent.contracts.payloads import dump_payload
from agent.contracts.topics import Topics
from agent.engines.detector import load_detector
from agent.engines.model_loading import load_manifest
from agent.events.emitter import EmitterContext, EventEmitter
from agent.events.journal import OpenEvents
from agent.events.machine import EventRules
from agent.pipeline import PipelineSettings, build_message
from agent.snapshots.keeper import SnapshotKeeper
from agent.snapshots.lifecycle import EventExtras
from agent.snapshots.writer import SnapshotWriter
from agent.tracking.build import make_tracker
from agent.tracking.stage import TrackingStage
from agent.types import Frame

REPO = Path(__file__).resolve().parents[1]


def frames_of(clip: Path, n: int) -> list[Frame]:
    cap = cv2.VideoCapture(str(clip))
    out: list[Frame] = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        now = time.time()
        out.append(Frame("demo", img, now, time.monotonic(), len(out)))
    cap.release()
    return out


def extras(cfg: AgentConfig, state: Path) -> EventExtras:
    """Snapshots and camera-wide counts as the daemon wires them (publishing to a no-op)."""
    keeper = None
    if cfg.snapshots.enabled:
        writer = SnapshotWriter(cfg.snapshots, state, Topics("bench"), lambda _t, _p: None)
        keeper = SnapshotKeeper(writer)
    return EventExtras("0" * 16, Topics("bench"), lambda _t, _p: None, keeper)


def build_stage(cfg_path: Path, state: Path) -> TrackingStage:
    cfg = load_config(cfg_path)
    cam, ev, tr = cfg.cameras[0], cfg.events, cfg.tracking
    rules = EventRules(
        ev.min_hits,
        ev.max_disappeared_frames,
        ev.max_disappeared_s,
        ev.zone_inertia_frames,
        tr.stationary_s,
        tr.stationary_px,
        tuple(cam.zones),
        tuple(cam.lines),
    )
    ctx = EmitterContext(
        "bench",
        "0" * 16,
        Topics("bench"),
        time.time(),
        lambda _c, _s, _p: True,
        lambda _t, _p: None,
    )
    emitter = EventEmitter(ctx, {"demo": rules}, OpenEvents(state), extras(cfg, state))
    return TrackingStage(make_tracker(tr), emitter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "agent.yaml")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--chunk", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(args.config)
    m = cfg.model
    manifest = load_manifest(m.manifest) if m.manifest else None
    det = load_detector(m.path, m.engine, conf_threshold=m.conf_threshold, manifest=manifest)
    frames = frames_of(REPO / "engines" / "demo" / "clip.mp4", args.frames)
    settings = PipelineSettings(device="bench", boot_id="0" * 16)
    with tempfile.TemporaryDirectory() as tmp:
        stage = build_stage(args.config, Path(tmp))
        spent = {"a": 0.0, "b": 0.0}
        count = {"a": 0, "b": 0}
        stage_ms: list[float] = []
        pos = {"a": 0, "b": 0}
        turns = args.rounds * max(1, len(frames) // args.chunk)
        for turn in range(turns):
            for which in "ab" if turn % 2 == 0 else "ba":
                t0 = time.perf_counter()
                for _ in range(args.chunk):
                    f = frames[pos[which] % len(frames)]
                    pos[which] += 1
                    d, timings = det.detect(f.image)
                    ids = None
                    if which == "b":
                        s0 = time.perf_counter()
                        ids = stage.on_result(f, d, det.info)
                        stage_ms.append((time.perf_counter() - s0) * 1000)
                    msg = build_message(settings, f, 0, d, timings, det.info, False, ids)
                    dump_payload(msg)
                spent[which] += time.perf_counter() - t0
                count[which] += args.chunk
            fa, fb = count["a"] / spent["a"], count["b"] / spent["b"]
            print(f"turn {turn}: a {fa:.2f} fps, b {fb:.2f} fps", file=sys.stderr)
        stage.close()
        sent = stage.emitter.sent if stage.emitter is not None else 0
    fa, fb = count["a"] / spent["a"], count["b"] / spent["b"]
    q = statistics.quantiles(stage_ms, n=100)
    print(f"frames per variant: {count['a']}; events sent: {sent}")
    print(f"(a) without tracking: {fa:.2f} fps")
    print(f"(b) with tracking + events: {fb:.2f} fps")
    print(f"ratio b/a: {fb / fa:.3f} (cost {100 * (1 - fb / fa):.1f} % of pipeline fps)")
    print(
        f"stage per frame: mean {statistics.fmean(stage_ms):.3f} ms, p50 {q[49]:.3f} ms, "
        f"p99 {q[98]:.3f} ms"
    )


if __name__ == "__main__":
    main()
