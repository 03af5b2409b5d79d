"""Memory soak: RSS of a running agent over a long run with broker restarts and model swaps.

Runs the real components in this process (camera reader on the demo clip, inference loop,
publisher with its SQLite outbox, a private Mosquitto), restarts the broker every
`--restart-every` seconds (reconnect + outbox replay) and swaps the model every
`--swap-every` seconds (load + warm the other version beside the running one, swap between
two frames, close the old one, as the OTA manager does). RSS is sampled every 5 s; growth is
measured from the end of the warm-up to the end. Target (BRIEF.md §6): <= 5 % over 30 min.

Usage:
    python bench/bench_soak.py [--minutes 30] [--warmup-minutes 2] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.config import CameraConfig, MqttConfig  # noqa: E402
from agent.contracts.topics import Topics  # noqa: E402
from agent.daemon import rss_mb  # noqa: E402
from agent.engines.detector import load_detector  # noqa: E402
from agent.engines.model_loading import load_manifest  # noqa: E402
from agent.engines.ort import OnnxRuntimeConfig  # noqa: E402
from agent.pipeline import Pipeline, PipelineSettings  # noqa: E402
from agent.publish.config import OutboxConfig  # noqa: E402
from agent.publish.publisher import Publisher  # noqa: E402
from agent.sources.config import FileSourceConfig  # noqa: E402
from agent.sources.reader import ReaderGroup  # noqa: E402
from tests.helpers.broker import Mosquitto  # noqa: E402

DEMO = REPO / "engines" / "demo"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=2.0)
    ap.add_argument("--restart-every", type=float, default=60.0, help="broker restart period, s")
    ap.add_argument("--swap-every", type=float, default=45.0, help="model swap period, s")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    manifest = load_manifest(DEMO / "manifest.json")
    versions = [manifest.model_copy(update={"version": v}) for v in (1, 2)]
    engine = OnnxRuntimeConfig(threads=1)

    def load(v: int):  # noqa: ANN202
        return load_detector(DEMO / "model.onnx", engine, manifest=versions[v])

    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        state = Path(tmp) / "state"
        state.mkdir()
        topics = Topics("soak-dev")
        boot = "50a450a4"
        pub = Publisher(
            MqttConfig(port=broker.port, keepalive_s=5, reconnect_min_s=0.2, reconnect_max_s=1.0),
            OutboxConfig(path=state / "outbox.sqlite3"),
            topics,
            state,
            boot,
        )
        cam = CameraConfig(id="cam", source=FileSourceConfig(path=DEMO / "clip.mp4"))
        group = ReaderGroup.from_configs([cam])
        current = 0
        pipe = Pipeline(
            PipelineSettings("soak-dev", boot),
            group,
            load(current),
            pub.submit_detection,
            lambda *_a: None,
        )
        pub.start()
        group.start()
        pipe.start()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        warm_end = t0 + args.warmup_minutes * 60
        next_restart = t0 + args.restart_every
        next_swap = t0 + args.swap_every
        samples: list[tuple[float, float]] = []
        restarts = swaps = 0
        rss_warm: float | None = None
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_restart:
                    broker.restart(signal.SIGTERM)
                    restarts += 1
                    next_restart = now + args.restart_every
                if now >= next_swap:
                    current = 1 - current
                    old = pipe.swap(load(current), timeout=30)
                    old.close()
                    swaps += 1
                    next_swap = now + args.swap_every
                rss = rss_mb()
                samples.append((now - t0, rss))
                if rss_warm is None and now >= warm_end:
                    rss_warm = rss
                time.sleep(5)
        finally:
            pipe.stop(5)
            group.stop(5)
            pub.stop(5)
            pipe.active_detector().close()
        st = pub.stats()
    rss_end = samples[-1][1]
    base = rss_warm if rss_warm is not None else samples[0][1]
    growth = (rss_end - base) / base * 100
    peak = max(r for _t, r in samples)
    line = (
        f"| {args.minutes:g} min | {restarts} | {swaps} | {pipe.window.total_frames} | "
        f"{base:.1f} | {rss_end:.1f} | {peak:.1f} | **{growth:+.1f} %** | {st.outbox_depth} |"
    )
    if args.markdown:
        print(
            f"Command: `python bench/bench_soak.py --minutes {args.minutes:g}` "
            f"({time.strftime('%Y-%m-%d')}; {platform.machine()}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f})"
        )
        print()
        print(
            "| run | broker restarts | swaps | frames | RSS after warm-up MB | RSS end MB | "
            "peak MB | growth | outbox left |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
    print(line)
    for t, r in samples[:: max(len(samples) // 12, 1)]:
        print(f"  t={t:7.0f}s rss={r:7.1f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
