"""A recording processed end to end: `edge-agent run` on a file with `every_frame: true,
loop: false`, against a real Mosquitto, publishes one message per frame and exits 0."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from agent.contracts.payloads import DetectionMessage, HealthMessage, StatusMessage
from tests.helpers.broker import Mosquitto
from tests.helpers.clips import cut_demo_clip
from tests.helpers.daemon import DaemonProcess, demo_config
from tests.helpers.mqtt import Recorder, retained

DEV = "dev-test"
FRAMES = 45  # cut from the demo clip: a few seconds of work for the demo model


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first FRAMES frames of the demo clip as an mp4 file."""
    return cut_demo_clip(tmp_path_factory.mktemp("clip") / "short.mp4", 0, FRAMES)


def count_frames(path: Path) -> int:
    """Frames OpenCV decodes from `path` (read to the end, not the header's count)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_every_frame_file_publishes_each_frame_once_and_exits_0(
    tmp_path: Path, mosquitto: Mosquitto, short_clip: Path
) -> None:
    """every_frame + loop: false, unpaced: one detection message per frame of the clip, seq
    0..n-1 without a gap, health with a CPU cost per frame, then exit 0 and offline status."""
    n = count_frames(short_clip)
    assert n == FRAMES
    cfg = demo_config(tmp_path / "state", mosquitto.port, health={"interval_s": 0.5})
    cfg["cameras"] = [
        {
            "id": "cam-a",
            "source": {
                "type": "file",
                "path": str(short_clip),
                "loop": False,
                "pace": False,
                "every_frame": True,
            },
        }
    ]
    topic = f"edge/{DEV}/cameras/cam-a/detections"
    rec = Recorder(mosquitto.port, [f"edge/{DEV}/#"])
    try:
        d = DaemonProcess(tmp_path / "d", cfg).start()
        try:
            code = d.wait(90)
        finally:
            d.kill()
        assert code == 0, d.log()[-3000:]
        rec.wait_for(lambda ms: sum(m.topic == topic for m in ms) >= n, timeout=10)
        msgs = [DetectionMessage.model_validate_json(m.payload) for m in rec.on(topic)]
        health = [
            HealthMessage.model_validate_json(m.payload) for m in rec.on(f"edge/{DEV}/health")
        ]
    finally:
        rec.close()
    assert [m.seq for m in msgs] == list(range(n)), [m.seq for m in msgs]
    assert len({m.boot_id for m in msgs}) == 1
    costs = [h.cpu_ms_per_frame for h in health if h.frames_processed > 0]
    assert costs and all(c is None or c > 0 for c in costs), costs
    assert any(c is not None for c in costs), costs
    raw = retained(mosquitto.port, f"edge/{DEV}/status")
    assert raw is not None and StatusMessage.model_validate_json(raw).state == "offline"
    assert "every camera played its file to the end" in d.log()
