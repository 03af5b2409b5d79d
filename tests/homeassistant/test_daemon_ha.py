"""A real daemon on the demo clip with tracking, events, snapshots and Home Assistant on, and a
real broker: a snapshot JPEG arrives retained and decodes, the event names its file, and the
discovery appears, is published again on Home Assistant's `online` birth message, and follows
a live reload that adds a zone."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.publish as mqtt_publish
import pytest
import yaml

from tests.helpers.broker import Mosquitto
from tests.helpers.daemon import DaemonProcess, demo_config
from tests.helpers.mqtt import Received, Recorder, retained

pytestmark = pytest.mark.slow

DEVICE = "dev-ha"
CONFIG_TOPIC = f"homeassistant/device/{DEVICE}/config"
SNAPSHOT = f"edge/{DEVICE}/cameras/cam-a/snapshot/person"
YARD = f"edge/{DEVICE}/cameras/cam-a/zones/yard/person"
YARD_COUNT = f"edge_{DEVICE}_cam-a_zone_yard_person_count"


def on(msgs: list[Received], topic: str) -> list[Received]:
    return [m for m in msgs if m.topic == topic]


def events_with_snapshot(msgs: list[Received]) -> list[dict]:
    out = []
    for m in msgs:
        if m.topic.endswith("/events"):
            ev = json.loads(m.payload)
            if ev.get("snapshot") and ev["label"] == "person":
                out.append(ev)
    return out


def add_zone(daemon: DaemonProcess, cfg: dict) -> None:
    """Rewrite the config with a zone `yard` on cam-a and reload it (SIGHUP)."""
    cam = {
        **cfg["cameras"][0],
        "zones": [{"id": "yard", "polygon": [[0, 0], [768, 0], [768, 576]]}],
    }
    daemon.config_path.write_text(yaml.safe_dump({**cfg, "cameras": [cam]}))
    daemon.signal(signal.SIGHUP)


def test_snapshot_and_discovery_from_the_demo_daemon(tmp_path: Path) -> None:
    """Discovery appears (retained) with the camera's entities; a person's snapshot JPEG is
    published retained once its file is written; `online` on homeassistant/status brings the
    discovery again; a zone added by a live reload gets its entities and its zero count."""
    state = tmp_path / "state"
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = demo_config(
            state,
            broker.port,
            device=DEVICE,
            tracking={"enabled": True},
            events={"enabled": True},
            snapshots={"min_interval_s": 0.5},
            homeassistant={"enabled": True},
        )
        rec = Recorder(broker.port, ["homeassistant/#", f"edge/{DEVICE}/cameras/#"])
        try:
            with DaemonProcess(tmp_path / "daemon", cfg) as daemon:
                try:
                    msgs = rec.wait_for(lambda ms: on(ms, CONFIG_TOPIC), 60)
                    disc = json.loads(on(msgs, CONFIG_TOPIC)[0].payload)
                    assert (
                        disc["cmps"][f"edge_{DEVICE}_cam-a_person_snapshot"]["image_topic"]
                        == SNAPSHOT
                    )
                    msgs = rec.wait_for(
                        lambda ms: events_with_snapshot(ms) and on(ms, SNAPSHOT), 60
                    )
                    path = state / events_with_snapshot(msgs)[0]["snapshot"]["path"]
                    assert path.is_file() and path.read_bytes()[:2] == b"\xff\xd8"
                    mqtt_publish.single(
                        "homeassistant/status", b"online", hostname="127.0.0.1", port=broker.port
                    )
                    rec.wait_for(lambda ms: len(on(ms, CONFIG_TOPIC)) >= 2, 30)
                    assert YARD_COUNT not in on(msgs, CONFIG_TOPIC)[-1].payload.decode()
                    add_zone(daemon, cfg)
                    msgs = rec.wait_for(
                        lambda ms: (
                            on(ms, YARD)
                            and YARD_COUNT in json.loads(on(ms, CONFIG_TOPIC)[-1].payload)["cmps"]
                        ),
                        30,
                    )
                    assert on(msgs, YARD)[0].payload == b"0"  # before any real count
                except (TimeoutError, AssertionError) as err:
                    raise AssertionError(
                        f"{err}\n--- daemon log ---\n{daemon.log()[-3000:]}"
                    ) from err
            jpeg = retained(broker.port, SNAPSHOT)
            assert jpeg is not None, "the snapshot is retained"
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (576, 768, 3)
            assert retained(broker.port, CONFIG_TOPIC) is not None
        finally:
            rec.close()
