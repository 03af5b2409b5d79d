"""The daemon with the fallback on: a real `python -m agent run` subprocess, a real Mosquitto,
the demo clip and model, and the tiny Florence-2 in its worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.contracts.payloads import DetectionMessage, HealthMessage
from tests.helpers.broker import Mosquitto
from tests.helpers.daemon import DaemonProcess, demo_config
from tests.helpers.mqtt import Received, Recorder

DEV = "dev-test"
TOPIC = f"edge/{DEV}/cameras/cam-a/detections"


@pytest.mark.slow
def test_daemon_publishes_refinements(
    tmp_path: Path, mosquitto: Mosquitto, tiny_model: Path
) -> None:
    """Hard YOLO messages get florence2 messages refining them; YOLO seq stays gapless."""
    rec = Recorder(mosquitto.port, [f"edge/{DEV}/#"])
    fallback = {
        "enabled": True,
        "model": str(tiny_model),
        "runtime": "torch-fp32",
        "task": "<CAPTION>",
        "max_new_tokens": 8,
        "idle_priority": False,
        "policy": {"band_lo": 0.0, "band_hi": 1.0},  # every detection is uncertain
        "rate": {"per_minute": 60, "burst": 2},
        "capture": {"dir": str(tmp_path / "cap"), "quota_bytes": 8 * 1024 * 1024},
    }
    cfg = demo_config(tmp_path / "state", mosquitto.port, fallback=fallback)
    with DaemonProcess(tmp_path / "d", cfg):
        rec.wait_for(
            lambda ms: sum(m.topic == TOPIC and b'"florence2"' in m.payload for m in ms) >= 2,
            timeout=300,
        )
        # health goes out every second: under load the two refinements can come before the
        # first health message that saw the worker up
        rec.wait_for(lambda ms: worker_up_in_health(ms), timeout=30)
    rec.close()
    msgs = [DetectionMessage.model_validate_json(m.payload) for m in rec.on(TOPIC)]
    yolo = {m.seq: m for m in msgs if m.source == "yolo"}
    refs = [m for m in msgs if m.source == "florence2"]
    assert sorted(yolo) == list(range(len(yolo)))  # florence2 messages do not consume seq
    assert [r.seq for r in refs] == list(range(len(refs)))  # their own stream, from 0
    for r in refs:
        y = yolo[r.refines]
        assert y.hard and r.hard and r.stream == "florence2" and r.boot_id == y.boot_id
        assert r.ts == y.ts
        assert r.model.name == "tiny-florence2" and r.task == "<CAPTION>"
    captured = [
        int(p.stem.rsplit("-", 1)[1]) for p in (tmp_path / "cap" / "cam-a").glob("*/*.json")
    ]
    assert captured and set(captured) <= {r.refines for r in refs}  # the last may race the stop
    assert worker_up_in_health(rec.on(f"edge/{DEV}/health"))


def worker_up_in_health(msgs: list[Received]) -> bool:
    """Some health message reported the Florence-2 worker up (idle or busy)."""
    health = [
        HealthMessage.model_validate_json(m.payload)
        for m in msgs
        if m.topic == f"edge/{DEV}/health"
    ]
    return bool({h.fallback_state for h in health} & {"idle", "busy"})
