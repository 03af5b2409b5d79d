"""Events at the gateway: the archive stores them on their own stream and acks them;
`edge-gateway watch --events` prints one line per event."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish

from agent.contracts.events import EventMessage
from agent.contracts.payloads import dump_payload
from tests.gateway.conftest import REPO, wait_for, write_config
from tests.gateway.test_archive_store import BOOT, TOPIC, Acks, archive, message, rows
from tests.helpers.broker import Mosquitto

EVENTS = "edge/jet-0/cameras/cam-a/events"


def event(seq: int, kind: str = "new", device: str = "jet-0") -> bytes:
    ending = kind == "end"
    return dump_payload(
        EventMessage(
            type=kind,  # type: ignore[arg-type]
            id=f"{BOOT}-cam-a-7",
            device=device,
            camera="cam-a",
            boot_id=BOOT,
            seq=seq,
            ts="2026-11-27T11:17:50.512Z",
            label="person",
            track_id=7,
            start_ts="2026-11-27T11:17:49.000Z",
            end_ts="2026-11-27T11:17:52.000Z" if ending else None,
            score=0.8,
            top_score=0.9,
            box=(10, 20, 60, 200),
            zones_current=["driveway"],
            zones_entered=["driveway"],
            lines_crossed=[{"line": "gate", "direction": "in", "ts": "2026-11-27T11:17:50.0Z"}],
            stationary=False,
            dwell_s={"driveway": 1.5},
            end_reason="lost" if ending else None,  # type: ignore[arg-type]
        )
    )


def test_archive_stores_and_acks_events_apart(tmp_path: Path) -> None:
    """Events are stored and acked on stream `events`; a detection on the events topic (or an
    event on the detections topic) is refused."""
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks)
    try:
        a.on_message(EVENTS, event(0))
        a.on_message(EVENTS, event(1, "end"))
        a.on_message(EVENTS, event(1, "end"))  # redelivery
        a.on_message(TOPIC, message(0))
        a.on_message(EVENTS, message(5))  # wrong payload for the topic
        a.on_message(TOPIC, event(6))
        wait_for(lambda: acks.upto(stream="events") == [1] and acks.upto() == [0], 10)
        assert a.stats.duplicates == 1 and a.stats.malformed == 2
    finally:
        a.stop()
    assert rows(tmp_path / "d.sqlite3") == [("detections", 0), ("events", 0), ("events", 1)]


def test_watch_events_prints_one_line_per_event(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`watch --events` shows events (not detections), one line each."""
    config = write_config(tmp_path, mosquitto.port, 8080)
    cmd = [sys.executable, "-m", "agent.gateway.cli", "--config", str(config), "watch"]
    proc = subprocess.Popen(
        [*cmd, "--events", "--count", "2", "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    seq = 0
    while proc.poll() is None and seq < 200:
        port = mosquitto.port
        mqtt_publish.single(TOPIC, message(seq), qos=1, hostname="127.0.0.1", port=port)
        kind = "new" if seq == 0 else "end"
        mqtt_publish.single(EVENTS, event(seq, kind), qos=1, hostname="127.0.0.1", port=port)
        seq += 1
        time.sleep(0.1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert all(" event #" in line and "person track 7 0.80" in line for line in lines)
    assert "zones=driveway lines=gate:in" in lines[0]
