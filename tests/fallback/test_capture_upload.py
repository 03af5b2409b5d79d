"""Hard-frame capture (files, labels, sidecar, quota) and upload to the real gateway intake."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from agent.fallback.capture import CaptureError, CaptureStore, read_capture_image, yolo_label_lines
from agent.fallback.config import UploadConfig
from agent.fallback.message import build_refinement
from agent.fallback.parse import parse_generation
from agent.fallback.runtime import FlorenceInfo, Generation
from agent.fallback.upload import Uploader, UploadOutcome, classify_status
from tests.fallback.conftest import make_frame, make_yolo
from tests.fallback.tiny_florence import CLASS_NAMES
from tests.helpers.broker import free_port

TOKEN = "intake-token-of-dev-1"
OD_TEXT = "</s><s>car<loc_100><loc_200><loc_300><loc_400>bus<loc_0><loc_0><loc_500><loc_500></s>"


def capture_one(store: CaptureStore, image: np.ndarray, seq: int, index: int = 0):
    frame = make_frame(image, index=index)
    yolo = make_yolo(frame, seq)
    res = parse_generation("<OD>", OD_TEXT, (frame.width, frame.height), CLASS_NAMES)
    gen = Generation(OD_TEXT, (2, 0), (frame.width, frame.height), 1.0, 2.0)
    info = FlorenceInfo("florence-2-base", "cd" * 32, "onnx-int8", Path("."))
    msg = build_refinement(yolo, res, info, 0, gen, 0.5, CLASS_NAMES, seq=0)
    return store.save(frame, yolo, msg, res, CLASS_NAMES), msg


def noisy(seed: int) -> np.ndarray:
    """A frame that does not compress (so its JPEG size is predictable-ish)."""
    return np.random.RandomState(seed).randint(0, 255, (240, 320, 3), dtype=np.uint8)


def test_capture_files(tmp_path: Path, image: np.ndarray) -> None:
    """A capture is a JPEG, YOLO labels of matched classes only, and a sidecar of both models."""
    store = CaptureStore(tmp_path / "cap", 10 * 1024 * 1024)
    cap, msg = capture_one(store, image, seq=12)
    jpg, txt, side = cap.files()
    assert jpg.parent == tmp_path / "cap" / "cam-1" / "2026-09-21"
    assert read_capture_image(jpg).shape == image.shape
    lines = txt.read_text().split()
    assert lines[0] == "1" and len(lines) == 5  # only 'car' (class 1); 'bus' matches no YOLO class
    meta = json.loads(side.read_text())
    assert meta["yolo"]["source"] == "yolo" and meta["florence2"]["refines"] == 12
    assert (
        meta["yolo"]["model"]["version"] == 3
        and meta["florence2"]["model"]["name"] == "florence-2-base"
    )
    assert meta["florence2_labels"] == ["car", "bus"] and meta["class_names"] == list(CLASS_NAMES)
    assert msg.detections[1].class_id == -1 and msg.detections[1].confidence is None


def test_yolo_label_lines_normalised(image: np.ndarray) -> None:
    """Label lines are `class cx cy w h` normalised to the frame."""
    res = parse_generation("<OD>", "car<loc_0><loc_0><loc_999><loc_999>", (200, 100), CLASS_NAMES)
    (line,) = yolo_label_lines(res, 200, 100)
    cls, cx, cy, w, h = line.split()
    assert cls == "1" and float(cx) == pytest.approx(0.5) and float(w) == pytest.approx(0.999)


def test_quota_drops_oldest(tmp_path: Path) -> None:
    """Past the quota, whole captures go oldest first, with their tickets, and are counted."""
    store = CaptureStore(tmp_path / "cap", 1024 * 1024, pending=True)
    caps = [capture_one(store, noisy(i), seq=i, index=i)[0] for i in range(20)]
    assert store.total_bytes <= 1024 * 1024
    assert store.dropped > 0 and store.dropped_unuploaded == store.dropped
    kept = sorted(p.with_suffix("") for p in (tmp_path / "cap").glob("*/*/*.json"))
    assert kept == [c.stem for c in caps[store.dropped :]]  # the newest survive
    assert len(store.pending_tickets()) == len(kept)
    assert not list(caps[0].stem.parent.glob(caps[0].stem.name + ".*"))


def test_quota_survives_restart(tmp_path: Path) -> None:
    """A new store indexes existing captures and keeps enforcing the quota across restarts."""
    s1 = CaptureStore(tmp_path / "cap", 1024 * 1024)
    for i in range(10):
        capture_one(s1, noisy(i), seq=i, index=i)
    s2 = CaptureStore(tmp_path / "cap", 1024 * 1024)
    assert len(s2) == len(s1) and s2.total_bytes == s1.total_bytes
    for i in range(10, 20):
        capture_one(s2, noisy(i), seq=i, index=i)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "cap").glob("*/*/*.*"))
    assert on_disk == s2.total_bytes <= 1024 * 1024


def test_interrupted_write_cleaned(tmp_path: Path, image: np.ndarray) -> None:
    """A JPEG without its sidecar (killed mid-capture) and temp files are removed at start."""
    s1 = CaptureStore(tmp_path / "cap", 10 * 1024 * 1024)
    cap, _ = capture_one(s1, image, seq=1)
    cap.stem.with_suffix(".json").unlink()
    (cap.stem.parent / ".x.jpg.part").write_bytes(b"half")
    s2 = CaptureStore(tmp_path / "cap", 10 * 1024 * 1024)
    assert len(s2) == 0 and not list(cap.stem.parent.iterdir())


def test_capture_bigger_than_quota(tmp_path: Path) -> None:
    """A single capture larger than the whole quota is refused with a clear error."""
    store = CaptureStore(tmp_path / "cap", 1024 * 1024)
    big = np.random.RandomState(0).randint(0, 255, (1200, 1600, 3), dtype=np.uint8)
    with pytest.raises(CaptureError, match="exceeds the quota"):
        capture_one(store, big, seq=1)


def test_undecodable_capture_image(tmp_path: Path) -> None:
    """A JPEG that does not decode raises CaptureError."""
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(CaptureError, match="not a decodable image"):
        read_capture_image(bad)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, UploadOutcome.DONE),  # stored
        (409, UploadOutcome.DONE),  # stored by an earlier attempt whose answer was lost
        (401, UploadOutcome.RETRY),  # token not registered yet
        (503, UploadOutcome.RETRY),  # gateway busy
        (429, UploadOutcome.RETRY),  # rate limited
        (400, UploadOutcome.REJECTED),  # the gateway refuses this capture for good
        (413, UploadOutcome.REJECTED),  # too large for the gateway's limit
    ],
)
def test_classify_status(status: int, outcome: UploadOutcome) -> None:
    """Each intake answer maps to done, retry or rejected."""
    assert classify_status(status) is outcome


def _gateway(tmp_path: Path):
    from agent.gateway.api.app import create_app
    from agent.gateway.config import GatewayConfig
    from agent.gateway.db import Store
    from agent.gateway.fleet import Fleet
    from agent.gateway.keys import KeyRole, init_keys, load_key

    cfg = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "gw"),
            "keys_dir": str(tmp_path / "keys"),
            "intake": {"tokens_sha256": {"dev-1": hashlib.sha256(TOKEN.encode()).hexdigest()}},
        }
    )
    init_keys(cfg.keys_dir)
    store = Store(cfg.db_path)
    fleet = Fleet(
        store,
        load_key(cfg.keys_dir, KeyRole.GATEWAY),
        lambda t, p: None,
        public_url=cfg.http.public_url,
    )
    fleet.enroll("dev-1", None)  # only enrolled devices may upload
    return cfg, store, create_app(cfg, store, fleet)


def test_upload_to_real_gateway(
    tmp_path: Path, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pending captures reach the real gateway intake (uvicorn); tickets go, files stay."""
    from tests.gateway.conftest import ServerThread

    monkeypatch.setenv("EDGE_INTAKE_TOKEN", TOKEN)
    cfg, store, app = _gateway(tmp_path)
    caps = CaptureStore(tmp_path / "cap", 10 * 1024 * 1024, pending=True)
    c1, _ = capture_one(caps, image, seq=1)
    c2, _ = capture_one(caps, image, seq=2, index=1)
    with ServerThread(app) as srv:
        up = Uploader(UploadConfig(url=srv.url, token_env="EDGE_INTAKE_TOKEN"), "dev-1", caps)
        assert up.drain() is True
        up.stop(1.0)
    store.close()
    assert up.uploaded == 2 and caps.pending_tickets() == []
    stored = sorted(p.name for p in (cfg.data_dir / "intake" / "dev-1" / "cam-1").glob("*/*"))
    assert stored == sorted(
        f"{c.stem.name}{s}" for c in (c1, c2) for s in (".jpg", ".json", ".txt")
    )
    assert c1.stem.with_suffix(".jpg").exists()  # local copy kept (under quota)


def test_gateway_unreachable_then_back(
    tmp_path: Path, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the gateway down uploads are retried and nothing is lost; once it is up they go."""
    from tests.gateway.conftest import ServerThread

    monkeypatch.setenv("EDGE_INTAKE_TOKEN", TOKEN)
    caps = CaptureStore(tmp_path / "cap", 10 * 1024 * 1024, pending=True)
    capture_one(caps, image, seq=1)
    port = free_port()
    up = Uploader(
        UploadConfig(url=f"http://127.0.0.1:{port}", token_env="EDGE_INTAKE_TOKEN", timeout_s=2.0),
        "dev-1",
        caps,
    )
    assert up.drain() is False
    assert up.failures == 1 and "ConnectError" in (up.last_error or "")
    assert len(caps.pending_tickets()) == 1
    cfg, store, app = _gateway(tmp_path)
    srv = ServerThread(app)
    srv.port = port
    srv.server.config.port = port
    with srv:
        assert up.drain() is True
    store.close()
    up.stop(1.0)
    assert caps.pending_tickets() == [] and up.uploaded == 1


def test_wrong_token_is_retried(
    tmp_path: Path, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 keeps the capture pending (the token may be registered later)."""
    from tests.gateway.conftest import ServerThread

    monkeypatch.setenv("EDGE_INTAKE_TOKEN", "not-the-token")
    _, store, app = _gateway(tmp_path)
    caps = CaptureStore(tmp_path / "cap", 10 * 1024 * 1024, pending=True)
    capture_one(caps, image, seq=1)
    with ServerThread(app) as srv:
        up = Uploader(UploadConfig(url=srv.url, token_env="EDGE_INTAKE_TOKEN"), "dev-1", caps)
        assert up.drain() is False
        up.stop(1.0)
    store.close()
    assert len(caps.pending_tickets()) == 1 and "HTTP 401" in (up.last_error or "")


def test_missing_token_env_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset token variable is reported by name, not sent as an empty header."""
    monkeypatch.delenv("EDGE_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ValueError, match="EDGE_NO_SUCH_TOKEN"):
        UploadConfig(url="http://gw:8080", token_env="EDGE_NO_SUCH_TOKEN").token()
