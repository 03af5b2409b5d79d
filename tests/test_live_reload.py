"""Live reload of a real daemon (SIGHUP) against a real Mosquitto, on the demo clip and model.

One daemon goes through every step, to keep the suite lean.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

from agent.contracts.payloads import DetectionMessage, StatusMessage
from tests.helpers.broker import Mosquitto
from tests.helpers.daemon import DEMO_CLIP, DaemonProcess, demo_config
from tests.helpers.mqtt import Recorder, retained
from tests.helpers.polling import wait_for

DEV = "dev-test"


def cam(cam_id: str) -> dict[str, Any]:
    return {"id": cam_id, "source": {"type": "file", "path": str(DEMO_CLIP), "loop": True}}


def seqs(rec: Recorder, camera: str) -> list[int]:
    topic = f"edge/{DEV}/cameras/{camera}/detections"
    return [DetectionMessage.model_validate_json(m.payload).seq for m in rec.on(topic)]


def status(port: int) -> StatusMessage:
    raw = retained(port, f"edge/{DEV}/status")
    assert raw is not None
    return StatusMessage.model_validate_json(raw)


class Reloading:
    """The daemon, its config file and the number of reloads it logged."""

    def __init__(self, d: DaemonProcess, cfg: dict[str, Any]) -> None:
        self.d, self.cfg, self.done = d, cfg, 0

    def reload(self, marker: str = '"config reloaded"', **changes: Any) -> None:
        self.cfg = {**self.cfg, **changes}
        self.d.config_path.write_text(yaml.safe_dump(self.cfg))
        before = self.d.log().count(marker)
        self.d.signal(signal.SIGHUP)
        wait_for(
            lambda: self.d.log().count(marker) > before,
            30,
            f"{marker} in the log",
            explain=lambda: f"daemon exit code: {self.d.proc.poll() if self.d.proc else None}",
        )
        assert self.d.proc is not None and self.d.proc.poll() is None, self.d.log()[-2000:]


def test_sighup_reloads_cameras_and_thresholds_live(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """SIGHUP adds, removes and re-adds a camera (seq continues), applies thresholds, names
    restart-only changes and refuses an invalid file, all without a restart."""
    rec = Recorder(mosquitto.port, [f"edge/{DEV}/#"])
    cfg = demo_config(tmp_path / "state", mosquitto.port, DEV)
    with DaemonProcess(tmp_path / "d", cfg) as d:
        r = Reloading(d, cfg)
        wait_for(lambda: len(seqs(rec, "cam-a")) >= 3, 60, "cam-a detections")
        first = status(mosquitto.port)
        r.reload()  # the same file: the daemon survives SIGHUP and nothing changes
        assert first.config_sha256 is not None
        assert status(mosquitto.port).config_sha256 == first.config_sha256

        r.reload(
            cameras=[cam("cam-a"), cam("cam-b")],
            model={**cfg["model"], "conf_threshold": 0.9},
            device={"id": DEV, "state_dir": str(tmp_path / "elsewhere")},
        )
        wait_for(lambda: len(seqs(rec, "cam-b")) >= 3, 60, "cam-b detections")
        assert seqs(rec, "cam-b")[0] == 0  # a new camera starts its stream at 0
        st = wait_for(lambda: (s := status(mosquitto.port)).restart_required and s, 10, "status")
        assert st.restart_required == ["device.state_dir"]
        assert [c.id for c in st.cameras] == ["cam-a", "cam-b"]
        assert st.config_sha256 not in (None, first.config_sha256)
        n = len(rec.on(f"edge/{DEV}/cameras/cam-a/detections"))
        wait_for(lambda: len(seqs(rec, "cam-a")) >= n + 6, 60, "cam-a after the reload")
        late = rec.on(f"edge/{DEV}/cameras/cam-a/detections")[-4:]
        confs = [
            det.confidence
            for m in late
            for det in DetectionMessage.model_validate_json(m.payload).detections
        ]
        assert all(c is not None and c >= 0.9 for c in confs), confs

        r.reload(cameras=[cam("cam-a")])  # cam-b removed
        wait_for(lambda: [c.id for c in status(mosquitto.port).cameras] == ["cam-a"], 10, "status")
        b = seqs(rec, "cam-b")
        assert b == list(range(len(b)))  # its stream ended cleanly: nothing lost
        r.reload(cameras=[cam("cam-a"), cam("cam-b")])  # and back: its seq continues
        wait_for(lambda: len(seqs(rec, "cam-b")) > len(b), 60, "cam-b again")
        assert seqs(rec, "cam-b")[len(b)] == len(b)

        r.reload('"config reload refused: invalid config; nothing changed"', cameras="nope")
        assert "cameras: Input should be a valid list" in d.log()
        assert [c.id for c in status(mosquitto.port).cameras] == ["cam-a", "cam-b"]
        d.signal(signal.SIGTERM)
        assert d.wait(15) == 0
    rec.close()
