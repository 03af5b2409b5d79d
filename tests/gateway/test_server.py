"""The HTTP side on a real uvicorn server: artifacts with Range, and the dataset intake."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.gateway.api.app import create_app
from agent.gateway.config import GatewayConfig
from agent.gateway.db import Store
from agent.gateway.fleet import Fleet
from agent.gateway.keys import KeyRole, init_keys, load_key
from tests.gateway.conftest import ADMIN, ServerThread, admin_config

TOKEN = "s3cret-token-of-cam-1"
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(2000)
FIXED_NOW = 1_800_000_000.0  # 2027-01-15 UTC
BLOB = os.urandom(300_000)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerThread, GatewayConfig]]:
    cfg = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "keys_dir": str(tmp_path / "keys"),
            "http": admin_config(),
            "intake": {
                "max_bytes": 64 * 1024,
                "tokens_sha256": {"dev-1": hashlib.sha256(TOKEN.encode()).hexdigest()},
            },
        }
    )
    init_keys(cfg.keys_dir)
    cfg.artifacts_dir.mkdir(parents=True)
    (cfg.artifacts_dir / hashlib.sha256(BLOB).hexdigest()).write_bytes(BLOB)
    with Store(cfg.db_path) as store:
        fleet = Fleet(
            store,
            load_key(cfg.keys_dir, KeyRole.GATEWAY),
            lambda t, p: None,
            public_url=cfg.http.public_url,
        )
        fleet.enroll("dev-1", None)  # its token is the config's
        app = create_app(cfg, store, fleet, clock=lambda: FIXED_NOW)
        with ServerThread(app) as srv:
            yield srv, cfg


DEVICE = {"Authorization": f"Bearer {TOKEN}"}  # artifacts need an enrolled device's token


def artifact_url(srv: ServerThread) -> str:
    return f"{srv.url}/v1/artifacts/{hashlib.sha256(BLOB).hexdigest()}"


def test_artifact_whole_body(server) -> None:
    """GET without Range returns every byte with its length."""
    srv, _ = server
    r = httpx.get(artifact_url(srv), headers=DEVICE)
    assert r.status_code == 200 and r.content == BLOB
    assert r.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=1000-", 1000, len(BLOB) - 1),  # resume from an offset (what devices send)
        ("bytes=0-99", 0, 99),  # a bounded range
        ("bytes=-500", len(BLOB) - 500, len(BLOB) - 1),  # the last 500 bytes
    ],
)
def test_artifact_range(server, header: str, start: int, end: int) -> None:
    """Range requests get 206 with exactly the asked bytes and a matching Content-Range."""
    srv, _ = server
    r = httpx.get(artifact_url(srv), headers={"Range": header, **DEVICE})
    assert r.status_code == 206
    assert r.content == BLOB[start : end + 1]
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(BLOB)}"


def test_artifact_range_past_the_end_is_416(server) -> None:
    """A range starting beyond the file is refused with 416."""
    srv, _ = server
    r = httpx.get(artifact_url(srv), headers={"Range": f"bytes={len(BLOB) + 10}-", **DEVICE})
    assert r.status_code == 416


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("0" * 64, 404),  # well-formed, not stored
        ("..%2F..%2Fetc%2Fpasswd", 404),  # a path trick: no route matches it
        ("ABC", 400),  # not a sha256
    ],
)
def test_artifact_bad_addresses(server, address: str, status: int) -> None:
    """Only stored sha256 addresses are served."""
    srv, _ = server
    assert httpx.get(f"{srv.url}/v1/artifacts/{address}", headers=DEVICE).status_code == status


def upload(
    srv: ServerThread,
    files: dict,
    device: str = "dev-1",
    camera: str = "cam-a",
    token: str | None = TOKEN,
    data: dict | None = None,
) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.post(
        f"{srv.url}/v1/intake/{device}/{camera}", files=files, data=data, headers=headers
    )


def test_intake_stores_three_files_per_device_camera_day(server) -> None:
    """JPEG, YOLO labels and JSON sidecar land under intake/<device>/<camera>/<UTC day>/."""
    srv, cfg = server
    r = upload(
        srv,
        {
            "image": ("000123.jpg", JPEG, "image/jpeg"),
            "labels": ("000123.txt", b"0 0.5 0.5 0.2 0.3\n1 0.1 0.2 0.05 0.05\n", "text/plain"),
            "meta": ("000123.json", b'{"seq": 123, "model": "demo-yolov8n@1"}', "application/json"),
        },
    )
    assert r.status_code == 201, r.text
    day = cfg.intake_dir / "dev-1" / "cam-a" / "2027-01-15"
    assert sorted(p.name for p in day.iterdir()) == ["000123.jpg", "000123.json", "000123.txt"]
    assert (day / "000123.jpg").read_bytes() == JPEG
    assert r.json()["stored"][0] == "intake/dev-1/cam-a/2027-01-15/000123.jpg"


@pytest.mark.parametrize(
    ("token", "device"),
    [
        (None, "dev-1"),  # no Authorization header
        ("wrong", "dev-1"),  # wrong token
        (TOKEN, "dev-2"),  # dev-1's token used for another device (no token configured)
    ],
)
def test_intake_requires_the_devices_token(server, token: str | None, device: str) -> None:
    """Uploads without the device's own bearer token get 401 and store nothing."""
    srv, cfg = server
    r = upload(srv, {"image": ("a.jpg", JPEG, "image/jpeg")}, device=device, token=token)
    assert r.status_code == 401
    assert not cfg.intake_dir.exists()


def test_intake_refuses_oversized_uploads(server) -> None:
    """A body above intake.max_bytes gets 413 and nothing is stored."""
    srv, cfg = server
    big = b"\xff\xd8\xff" + b"\0" * (70 * 1024)
    r = upload(srv, {"image": ("a.jpg", big, "image/jpeg")})
    assert r.status_code == 413
    assert not cfg.intake_dir.exists()


@pytest.mark.parametrize(
    ("files", "data", "status"),
    [
        ({"image": ("../../etc/x.jpg", JPEG, "image/jpeg")}, None, 400),  # traversal in a name
        ({"image": ("a.jpg", JPEG, "image/jpeg")}, {"name": "..\\evil"}, 400),  # backslash
        ({"image": (".hidden.jpg", JPEG, "image/jpeg")}, None, 400),  # leading dot
        (
            {
                "image": ("a.jpg", JPEG, "image/jpeg"),
                "labels": ("../a.txt", b"0 0.5 0.5 0.1 0.1", "text/plain"),
            },
            None,
            400,
        ),  # in labels
        ({"image": ("a.jpg", b"PNG not jpeg", "image/jpeg")}, None, 415),  # not a JPEG
        (
            {
                "image": ("a.jpg", JPEG, "image/jpeg"),
                "labels": ("a.txt", b"0 1.5 0.5 0.1 0.1", "text/plain"),
            },
            None,
            400,
        ),  # coords > 1
        (
            {
                "image": ("a.jpg", JPEG, "image/jpeg"),
                "meta": ("a.json", b"[1, 2]", "application/json"),
            },
            None,
            400,
        ),  # meta not an object
        ({"labels": ("a.txt", b"", "text/plain")}, None, 400),  # no image at all
    ],
)
def test_intake_bad_uploads(server, files: dict, data: dict | None, status: int) -> None:
    """Path tricks and malformed parts are refused and nothing is written."""
    srv, cfg = server
    r = upload(srv, files, data=data)
    assert r.status_code == status, r.text
    stored = list(cfg.intake_dir.rglob("*")) if cfg.intake_dir.exists() else []
    assert [p for p in stored if p.is_file()] == []


@pytest.mark.parametrize(("device", "camera"), [("Dev-1", "cam-a"), ("dev-1", "-cam")])
def test_intake_bad_ids_in_the_path(server, device: str, camera: str) -> None:
    """Device and camera ids in the URL must follow the id rule."""
    srv, _ = server
    assert upload(srv, {"image": ("a.jpg", JPEG, "image/jpeg")}, device, camera).status_code == 400


def test_intake_never_overwrites(server) -> None:
    """A second upload with the same name that day is refused (409); the first stays."""
    srv, cfg = server
    assert upload(srv, {"image": ("a.jpg", JPEG, "image/jpeg")}).status_code == 201
    r = upload(srv, {"image": ("a.jpg", b"\xff\xd8\xff" + b"other", "image/jpeg")})
    assert r.status_code == 409
    assert (cfg.intake_dir / "dev-1" / "cam-a" / "2027-01-15" / "a.jpg").read_bytes() == JPEG


def test_deploy_from_a_non_loopback_address_is_forbidden(tmp_path: Path) -> None:
    """With admin_loopback_only, admin API calls from another host get 403 even with the token."""
    from starlette.testclient import TestClient

    cfg = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "keys_dir": str(tmp_path / "keys"),
            "http": admin_config(admin_loopback_only=True, allowed_hosts=["testserver"]),
        }
    )
    init_keys(cfg.keys_dir)
    with Store(cfg.db_path) as store:
        fleet = Fleet(
            store,
            load_key(cfg.keys_dir, KeyRole.GATEWAY),
            lambda t, p: None,
            public_url=cfg.http.public_url,
        )
        client = TestClient(
            create_app(cfg, store, fleet), client=("192.168.1.50", 5000), headers=ADMIN
        )
        body = {"model": "m", "version": 1, "devices": ["a"]}
        assert client.post("/v1/rollouts", json=body).status_code == 403
        assert client.post("/v1/rollouts/1/abort", json={}).status_code == 403
        assert client.get("/v1/devices").status_code == 403  # the restriction covers every view
