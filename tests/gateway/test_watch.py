"""`edge-gateway watch`: live detections from a real broker, one compact line per frame."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish

from tests.gateway.conftest import REPO, write_config
from tests.helpers.broker import Mosquitto
from tests.helpers.messages import detection_payload


def message(seq: int, device: str = "jet-0", camera: str = "cam-a") -> bytes:
    return detection_payload(seq, device, camera)


def test_watch_prints_chosen_camera_compactly_and_flags_gaps(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Only the chosen device/camera is printed, one line per frame, and a seq gap is flagged."""
    config = write_config(tmp_path, mosquitto.port, 8080)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.gateway.cli",
            "--config",
            str(config),
            "watch",
            "--devices",
            "jet-0",
            "--cameras",
            "cam-a",
            "--count",
            "3",
            "--duration",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    topic = "edge/jet-0/cameras/cam-a/detections"
    # keep publishing until watch has subscribed and printed three lines (it exits by itself)
    seq = 0
    while proc.poll() is None and seq < 200:
        mqtt_publish.single(
            "edge/jet-1/cameras/cam-a/detections",
            message(0, "jet-1"),
            hostname="127.0.0.1",
            port=mosquitto.port,
        )
        mqtt_publish.single(
            "edge/jet-0/cameras/cam-b/detections",
            message(0, camera="cam-b"),
            hostname="127.0.0.1",
            port=mosquitto.port,
        )
        mqtt_publish.single(topic, message(seq), qos=1, hostname="127.0.0.1", port=mosquitto.port)
        seq += 5  # every message after the first is a gap
        time.sleep(0.1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if not line.startswith("  !")]
    assert len(lines) == 3
    assert all(line.startswith("11:17:50.512 jet-0/cam-a #") for line in lines)
    assert lines[0].endswith("demo-yolov8n@2 41.3ms personx2 carx1")
    assert "gap on jet-0/cam-a" in out
