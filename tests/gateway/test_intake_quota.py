"""Intake limits: per-device bytes and files per day, and the free-space floor; refusals are
counted and shown in the fleet view."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.gateway.api.app import create_app
from agent.gateway.config import GatewayConfig
from agent.gateway.db import Store
from agent.gateway.fleet import Fleet
from agent.gateway.keys import KeyRole, init_keys, load_key
from tests.gateway.conftest import ADMIN, ServerThread, admin_config, sha256_hex

TOKEN = "intake-token-of-dev-1"
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(3000)
FIXED_NOW = 1_800_000_000.0  # 2027-01-15 UTC


def serve(tmp_path: Path, **intake: Any) -> Iterator[tuple[ServerThread, GatewayConfig]]:
    cfg = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "keys_dir": str(tmp_path / "keys"),
            "http": admin_config(),
            "intake": intake,
        }
    )
    init_keys(cfg.keys_dir)
    with Store(cfg.db_path) as store:
        key = load_key(cfg.keys_dir, KeyRole.GATEWAY)
        fleet = Fleet(store, key, lambda t, p: None, public_url=cfg.http.public_url)
        fleet.enroll("dev-1", sha256_hex(TOKEN))
        with ServerThread(create_app(cfg, store, fleet, clock=lambda: FIXED_NOW)) as srv:
            yield srv, cfg


@pytest.fixture
def small_quota(tmp_path: Path) -> Iterator[tuple[ServerThread, GatewayConfig]]:
    yield from serve(tmp_path, quota_bytes_per_day=8000, quota_files_per_day=3, min_free_bytes=0)


def upload(srv: ServerThread, name: str) -> httpx.Response:
    return httpx.post(
        f"{srv.url}/v1/intake/dev-1/cam-a",
        files={"image": (name, JPEG, "image/jpeg")},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def intake_view(srv: ServerThread) -> dict[str, Any]:
    devices = httpx.get(f"{srv.url}/v1/devices", headers=ADMIN).json()
    return devices[0]["intake"]


def stored(cfg: GatewayConfig) -> list[str]:
    return sorted(p.name for p in cfg.intake_dir.rglob("*.jpg"))


def test_uploads_are_counted_per_device_and_day(small_quota) -> None:
    """A stored upload adds its bytes and files to the device's day in the fleet view."""
    srv, _ = small_quota
    assert upload(srv, "a.jpg").status_code == 201
    assert intake_view(srv) == {
        "day": "2027-01-15",
        "bytes": len(JPEG),
        "files": 1,
        "refused_quota": 0,
        "refused_disk": 0,
    }


def test_daily_byte_quota_refuses_with_429(small_quota) -> None:
    """The upload that would pass the day's byte quota gets 429, is not stored and is counted."""
    srv, cfg = small_quota
    assert upload(srv, "a.jpg").status_code == 201
    assert upload(srv, "b.jpg").status_code == 201
    r = upload(srv, "c.jpg")  # 3 x 3004 bytes > 8000
    assert r.status_code == 429 and r.json()["reason"] == "quota_exceeded"
    assert stored(cfg) == ["a.jpg", "b.jpg"]
    assert intake_view(srv)["refused_quota"] == 1


def test_daily_file_quota_refuses_with_429(tmp_path: Path) -> None:
    """The upload that would pass the day's file count gets 429."""
    for srv, cfg in serve(tmp_path, quota_files_per_day=1, min_free_bytes=0):
        assert upload(srv, "a.jpg").status_code == 201
        assert upload(srv, "b.jpg").status_code == 429
        assert stored(cfg) == ["a.jpg"]


def test_free_space_floor_refuses_with_507(tmp_path: Path) -> None:
    """Below the free-space floor uploads get 507, nothing is written, and it is counted."""
    for srv, cfg in serve(tmp_path, min_free_bytes=2**62):
        r = upload(srv, "a.jpg")
        assert r.status_code == 507 and r.json()["reason"] == "disk_floor"
        assert stored(cfg) == []
        assert intake_view(srv)["refused_disk"] == 1
