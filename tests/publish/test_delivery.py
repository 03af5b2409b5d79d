"""Delivery under real faults: broker SIGTERM/SIGKILL, publisher kill -9, network cut, outage cap.

Each test uses its own Mosquitto on a free port and checks what a deduplicating consumer ends
up with: every (boot_id, seq) committed on the device, in order per camera.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.contracts.topics import Topics
from agent.publish.publisher import Publisher
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.proxy import TcpProxy
from tests.publish.support import (
    BOOT,
    DEVICE,
    GATEWAY_KEYS,
    Collector,
    first_occurrences,
    mqtt_cfg,
    outbox_cfg,
    payload,
    retained_status,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Driver:
    """tests/publish/driver.py as a real subprocess; `last` holds its latest stats line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.publish.driver", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.last: dict[str, Any] = {}
        self.lines = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.last = json.loads(line)
                self.lines += 1

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        self.proc.wait(15)
        self._reader.join(2)


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    """Driver processes started by a test; killed at the end whatever happens."""
    started: list[Driver] = []
    yield started
    for d in started:
        d.kill()


def assert_complete_in_order(col: Collector, boot_id: str, n: int, camera: str = "cam1") -> int:
    """Every seq 0..n-1 of (boot_id, camera) arrived, first occurrences in order; returns dups."""
    seqs = col.seqs(camera, boot_id)
    firsts = first_occurrences(seqs)
    assert set(firsts) == set(range(n)), f"missing: {sorted(set(range(n)) - set(firsts))[:20]}"
    assert firsts == sorted(firsts), "first occurrences out of order"
    return len(seqs) - len(firsts)


@pytest.mark.parametrize(
    ("sig", "gateway_ack"),
    [
        # SIGTERM: Mosquitto saves its persistence on the way out; PUBACK alone is enough.
        (signal.SIGTERM, False),
        # SIGKILL: whatever Mosquitto PUBACKed since its last autosave is gone; the gateway ack
        # keeps those messages in the outbox until the consumer has them.
        (signal.SIGKILL, True),
    ],
)
def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, sig: int, gateway_ack: bool
) -> None:
    """A broker killed mid-stream and restarted: the consumer gets every seq, in order."""
    n = 1500
    # `user root`: the test runs as root and the broker must write its persistence file into
    # pytest's private temporary directory (the default drops to the `mosquitto` user).
    broker = Mosquitto(tmp_path / "broker", persistence=True, extra_conf="user root")
    broker.start()
    col = Collector(broker.port, ack_device=DEVICE if gateway_ack else None).start()
    pub = Publisher(
        mqtt_cfg(broker.port),
        outbox_cfg(tmp_path, require_gateway_ack=gateway_ack, gateway_ack_timeout_s=1.0),
        Topics(DEVICE),
        tmp_path,
        BOOT,
        GATEWAY_KEYS,
    )
    try:
        pub.start()
        for seq in range(n):
            while not pub.submit_detection("cam1", seq, payload("cam1", seq)):
                time.sleep(0.001)
            if seq == n // 2:
                wait_for(lambda: len(col.distinct("cam1")) > 100, 10, "some delivered")
                broker.restart(sig)
            elif seq % 50 == 0:
                time.sleep(0.01)  # a stream, not one burst
        try:
            wait_for(lambda: len(col.distinct("cam1")) == n, 30, "every seq delivered")
        finally:
            print(pub.stats(), sorted(set(range(n)) - col.distinct("cam1"))[:50])
        dups = assert_complete_in_order(col, BOOT, n)
        wait_for(lambda: pub.stats().outbox_depth == 0, 10, "outbox drained")
        assert pub.stats().outbox_dropped == 0
        print(f"duplicates after {signal.Signals(sig).name}: {dups}")
    finally:
        pub.stop(2)
        col.stop()
        broker.stop(signal.SIGKILL)


def test_publisher_kill9_while_draining_then_restart_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, drivers: list[Driver]
) -> None:
    """kill -9 of the publisher process mid-backlog, restarted: every seq of both boots arrives."""
    n1, n2 = 3000, 200
    state = tmp_path / "state"
    common = ["--port", str(mosquitto.port), "--state-dir", str(state), "--inflight", "1"]
    with Collector(mosquitto.port) as col:
        d1 = Driver(*common, "--boot-id", "boot-1", "--count", str(n1))
        drivers.append(d1)
        wait_for(
            lambda: d1.last.get("submitted") == n1 and d1.last.get("queue_depth") == 0,
            30,
            "first boot committed every message",
        )
        wait_for(lambda: len(col.distinct("cam1", "boot-1")) >= 200, 30, "backlog draining")
        d1.kill(signal.SIGKILL)
        assert len(col.distinct("cam1", "boot-1")) < n1, "backlog drained before the kill"
        wait_for(lambda: "offline" in col.statuses, 10, "last will 'offline' after kill -9")
        d2 = Driver(*common, "--inflight", "100", "--boot-id", "boot-2", "--count", str(n2))
        drivers.append(d2)
        wait_for(lambda: len(col.distinct("cam1", "boot-2")) == n2, 60, "second boot delivered")
        wait_for(lambda: len(col.distinct("cam1", "boot-1")) == n1, 10, "first boot replayed")
        dups = assert_complete_in_order(col, "boot-1", n1)
        assert_complete_in_order(col, "boot-2", n2)
        # Replay is in commit order: the whole first boot arrives before the second boot's rows.
        print(f"duplicates after kill -9: {dups}")


def test_network_cut_longer_than_keepalive_reconnects_and_replays(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A black-holed link past keepalive: offline (will), reconnect, replay, online again."""
    with TcpProxy(mosquitto.port) as proxy, Collector(mosquitto.port) as col:
        pub = Publisher(
            mqtt_cfg(proxy.port, keepalive_s=5),
            outbox_cfg(tmp_path),
            Topics(DEVICE),
            tmp_path,
            BOOT,
        )
        pub.start()
        try:
            wait_for(lambda: pub.stats().connected, 10, "connected through the proxy")
            for seq in range(100):
                pub.submit_detection("cam1", seq, payload("cam1", seq))
            wait_for(lambda: len(col.distinct("cam1")) == 100, 10, "first batch delivered")
            wait_for(lambda: pub.stats().outbox_depth == 0, 10, "first batch acknowledged")
            proxy.blackhole(True)
            for seq in range(100, 300):
                pub.submit_detection("cam1", seq, payload("cam1", seq))
            wait_for(lambda: "offline" in col.statuses, 15, "broker publishes the last will")
            wait_for(lambda: not pub.stats().connected, 15, "device notices the dead link")
            assert pub.stats().outbox_depth == 200
            proxy.blackhole(False)
            wait_for(lambda: len(col.distinct("cam1")) == 300, 20, "replay after reconnect")
            assert_complete_in_order(col, BOOT, 300)
            off = len(col.statuses) - 1 - col.statuses[::-1].index("offline")
            assert "online" in col.statuses[off:], "no 'online' after the 'offline'"
            assert retained_status(mosquitto.port) == "online"
            assert pub.stats().connects >= 2
        finally:
            pub.stop(2)


def test_outage_past_the_cap_drops_oldest_counts_and_stays_bounded(
    tmp_path: Path, drivers: list[Driver]
) -> None:
    """A long outage fills the outbox: oldest dropped and counted, disk and RSS bounded."""
    port = free_port()  # nothing listens yet: the broker is "down"
    cap = 256 * 1024
    n = 4000  # ~2.4 MB of payload, ~10x the cap
    state = tmp_path / "state"
    d = Driver(
        "--port",
        str(port),
        "--state-dir",
        str(state),
        "--boot-id",
        BOOT,
        "--count",
        str(n),
        "--pad",
        "500",
        "--max-bytes",
        str(cap),
    )
    drivers.append(d)
    wait_for(lambda: d.last.get("submitted", 0) >= n // 4, 60, "a quarter submitted")
    rss_early = d.last["rss_kb"]
    wait_for(
        lambda: d.last.get("submitted") == n and d.last.get("queue_depth") == 0, 60, "all committed"
    )
    # Every message is either stored or counted as dropped (the pump may still hold a batch).
    wait_for(
        lambda: d.last["outbox_depth"] + d.last["outbox_dropped"] == n, 10, "stored + dropped == n"
    )
    s = d.last
    assert s["outbox_dropped"] > 0
    disk = sum(p.stat().st_size for p in state.glob("outbox.sqlite3*") if p.name[-4:] != "-shm")
    assert disk <= cap, f"outbox files {disk} bytes > cap {cap}"
    assert s["rss_kb"] - rss_early < 8 * 1024, "memory grew with the backlog"
    kept, dropped = s["outbox_depth"], s["outbox_dropped"]
    with Mosquitto(tmp_path / "broker", port=port) as broker, Collector(broker.port) as col:
        wait_for(lambda: len(col.distinct("cam1")) == kept, 30, "the kept newest delivered")
        assert col.distinct("cam1") == set(range(dropped, n)), "kept rows are not the newest"
        wait_for(lambda: d.last.get("connected") is True, 10, "driver connected")
        status = retained_full_status(broker.port)
        assert status["outbox_dropped"] == dropped


def retained_full_status(port: int) -> dict[str, Any]:
    """The retained status payload of DEVICE, read with a fresh subscription."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[dict[str, Any]] = []
    ev = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, *a: cl.subscribe(f"edge/{DEVICE}/status", 1)

    def on_message(cl: Any, ud: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(json.loads(msg.payload))
        ev.set()

    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    ev.wait(5)
    c.disconnect()
    c.loop_stop()
    assert got, "no retained status"
    return got[0]
