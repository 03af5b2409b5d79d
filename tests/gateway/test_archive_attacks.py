"""Attacks on the detection archive's acks, through the surfaces a LAN client has: a real
Mosquitto and a real `edge-gateway serve` with `archive.enabled`.

The payloads are written out by hand in the format devices have always published, so the same
file runs against older gateways (where both attacks succeeded).
"""

from __future__ import annotations

import json
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from tests.gateway.conftest import Site
from tests.helpers.mqtt import Recorder

pytestmark = pytest.mark.slow

BOOT = "00000000000000aa"


def payload(device: str, camera: str, seq: int, boot_id: str = BOOT) -> bytes:
    """A minimal valid YOLO detection message, as any agent version publishes it."""
    return json.dumps(
        {
            "schema": "edge.detections/1",
            "device": device,
            "camera": camera,
            "boot_id": boot_id,
            "seq": seq,
            "ts": "2026-11-29T10:00:00.000Z",
            "frame": {"width": 640, "height": 480},
            "model": {"name": "m", "version": 1, "sha256": "a" * 64},
            "source": "yolo",
            "latency_ms": {"pre": 1.0, "infer": 2.0, "post": 1.0, "total": 4.0},
            "detections": [],
            "hard": False,
        }
    ).encode()


def publisher(port: int) -> mqtt.Client:
    """An anonymous LAN client."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def send(c: mqtt.Client, device: str, camera: str, seqs: list[int], **kw: Any) -> None:
    for seq in seqs:
        c.publish(
            f"edge/{device}/cameras/{camera}/detections", payload(device, camera, seq, **kw), qos=1
        ).wait_for_publish(5)


def acked(rec: Recorder, device: str, camera: str) -> list[int]:
    """seq_upto of every detections-stream ack seen for (device, camera), in arrival order."""
    out: list[int] = []
    for m in rec.messages:
        if m.topic != f"edge/{device}/ack":
            continue
        for e in json.loads(m.payload)["acks"]:
            if e["camera"] == camera and e.get("stream", "detections") == "detections":
                out.append(e["seq_upto"])
    return out


def start_archive(site: Site) -> None:
    cfg = yaml.safe_load(site.config.read_text())
    cfg["archive"] = {"enabled": True, "flush_interval_s": 0.05}
    site.config.write_text(yaml.safe_dump(cfg))
    site.gateway.start()
    site.gateway.enroll(["good", "evil"])


def test_one_poisoned_message_does_not_stop_acks_for_other_devices(site: Site) -> None:
    """A detection with a 300-character boot_id must not block acks to a well-behaved device."""
    start_archive(site)
    rec = Recorder(site.broker.port, ["edge/+/ack"])
    c = publisher(site.broker.port)
    try:
        send(c, "evil", "cam-a", [0], boot_id="x" * 300)
        send(c, "good", "cam-a", [0, 1, 2])
        rec.wait_for(lambda _m: 2 in acked(rec, "good", "cam-a"), 20)
    finally:
        c.loop_stop()
        rec.client.loop_stop()


def test_replay_past_a_hole_is_not_taken_as_proof_the_hole_is_gone(site: Site) -> None:
    """Reviewer's scenario: 50 never arrives, 51-52 are replayed; nothing past 49 is acked."""
    start_archive(site)
    rec = Recorder(site.broker.port, ["edge/+/ack"])
    c = publisher(site.broker.port)
    try:
        send(c, "good", "cam-a", [*range(50), 51, 52])
        rec.wait_for(lambda _m: 49 in acked(rec, "good", "cam-a"), 20)
        send(c, "good", "cam-a", [51, 52])  # the device's replay; 50 lost on the way again
        send(c, "good", "cam-b", [0])  # acked by a batch written after the replay
        rec.wait_for(lambda _m: 0 in acked(rec, "good", "cam-b"), 20)
        assert max(acked(rec, "good", "cam-a")) == 49
    finally:
        c.loop_stop()
        rec.client.loop_stop()
