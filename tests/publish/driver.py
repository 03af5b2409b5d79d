"""A real publisher process for the fault tests: `python -m tests.publish.driver ...`.

It creates a `Publisher` (as the daemon does), submits `--count` detection-like messages for one
camera (retrying while the hand-off queue is full, so every message gets committed), then keeps
running and prints one JSON line of stats every 50 ms on stdout until SIGTERM (orderly stop) or
SIGKILL. It pushes a status snapshot with `outbox_dropped` when that changes, as the daemon does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from agent.contracts.payloads import StatusMessage, rfc3339_ms
from agent.contracts.topics import Topics
from agent.publish.config import MqttConfig, OutboxConfig
from agent.publish.publisher import Publisher
from tests.publish.support import DEVICE, GATEWAY_KEYS, payload


def rss_kb() -> int:
    """Resident set size of this process in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--boot-id", required=True)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--camera", default="cam1")
    ap.add_argument("--pad", type=int, default=0)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--max-bytes", type=int, default=64 * 1024 * 1024)
    ap.add_argument("--gateway-ack", action="store_true")
    ap.add_argument("--keepalive", type=int, default=5)
    args = ap.parse_args()

    def status(dropped: int) -> StatusMessage:
        return StatusMessage(
            device=DEVICE,
            state="online",
            ts=rfc3339_ms(time.time()),
            boot_id=args.boot_id,
            outbox_dropped=dropped,
        )

    pub = Publisher(
        MqttConfig(
            port=args.port, keepalive_s=args.keepalive, reconnect_min_s=0.2, reconnect_max_s=1.0
        ),
        OutboxConfig(
            path=args.state_dir / "outbox.sqlite3",
            inflight=args.inflight,
            max_bytes=args.max_bytes,
            require_gateway_ack=args.gateway_ack,
            gateway_ack_timeout_s=1.0,
        ),
        Topics(DEVICE),
        args.state_dir,
        args.boot_id,
        GATEWAY_KEYS,
    )
    pushed = [-1]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pub.start()
    submitted = 0

    def report() -> None:
        s = pub.stats()
        if s.outbox_dropped != pushed[0]:
            pushed[0] = s.outbox_dropped
            pub.set_status(status(s.outbox_dropped))
        line = dict(s.__dict__, submitted=submitted, rss_kb=rss_kb(), pid=os.getpid())
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    last = 0.0
    for seq in range(args.count):
        while not pub.submit_detection(
            args.camera, seq, payload(args.camera, seq, args.boot_id, args.pad)
        ):
            time.sleep(0.001)
        submitted += 1
        if time.monotonic() - last > 0.05:
            report()
            last = time.monotonic()
    while not stop.wait(0.05):
        report()
    pub.stop(5.0)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
