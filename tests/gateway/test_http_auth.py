"""Credentials of the HTTP side: the admin token, Host names, JSON bodies, device tokens for
artifacts (also from the device's real downloader), and the reviewer's cross-origin deploy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.contracts.ota import OtaRejectedError, Reason
from agent.gateway.api.app import create_app
from agent.gateway.config import GatewayConfig
from agent.gateway.db import Store
from agent.gateway.fleet import Fleet
from agent.gateway.keys import KeyRole, init_keys, load_key
from agent.ota.download import DownloadSettings, download_artifact
from tests.gateway.conftest import ADMIN, ServerThread, Site, admin_config, sha256_hex

BLOB = os.urandom(50_000)
SHA = hashlib.sha256(BLOB).hexdigest()
DEVICE_TOKEN = "token-of-cam-1"

ADMIN_ROUTES = [
    ("GET", "/v1/health"),
    ("GET", "/v1/devices"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/demo/1"),
    ("GET", "/v1/rollouts"),
    ("GET", "/v1/rollouts/1"),
    ("POST", "/v1/rollouts"),
    ("POST", "/v1/rollouts/1/abort"),
    ("POST", "/v1/devices"),
    ("DELETE", "/v1/devices/cam-1"),
]


def gateway(tmp_path: Path, **http: object) -> tuple[GatewayConfig, Store, Fleet]:
    cfg = GatewayConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "keys_dir": str(tmp_path / "keys"),
            "http": http,
        }
    )
    init_keys(cfg.keys_dir)
    cfg.artifacts_dir.mkdir(parents=True)
    (cfg.artifacts_dir / SHA).write_bytes(BLOB)
    store = Store(cfg.db_path)
    key = load_key(cfg.keys_dir, KeyRole.GATEWAY)
    fleet = Fleet(store, key, lambda t, p: None, public_url=cfg.http.public_url)
    return cfg, store, fleet


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerThread, Fleet]]:
    cfg, store, fleet = gateway(tmp_path, **admin_config())
    fleet.enroll("cam-1", sha256_hex(DEVICE_TOKEN))
    try:
        with ServerThread(create_app(cfg, store, fleet)) as srv:
            yield srv, fleet
    finally:
        store.close()


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("token", [None, "wrong", DEVICE_TOKEN])
def test_admin_routes_need_the_admin_token(server, method: str, path: str, token) -> None:
    """No token, a wrong one or a device's token: 401 on every admin route."""
    srv, _ = server
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    r = httpx.request(method, srv.url + path, headers=headers, content=b"{}")
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"


def test_admin_token_opens_the_views(server) -> None:
    """With the admin token the fleet view answers, listing the enrolled device."""
    srv, _ = server
    r = httpx.get(srv.url + "/v1/devices", headers=ADMIN)
    assert r.status_code == 200 and [d["device"] for d in r.json()] == ["cam-1"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_admin_posts_must_be_json(server, content_type: str | None) -> None:
    """A POST whose body is not declared application/json gets 415, even with the token."""
    srv, fleet = server
    headers = dict(ADMIN)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = b'{"model": "demo", "version": 1, "devices": ["cam-1"]}'
    r = httpx.post(srv.url + "/v1/rollouts", headers=headers, content=body)
    assert r.status_code == 415, r.text
    assert fleet.store.rollout_ids() == []


@pytest.mark.parametrize(("host", "status"), [("evil.example", 421), ("evil.example:8080", 421)])
def test_admin_api_answers_only_to_its_own_host_names(server, host: str, status: int) -> None:
    """A Host header naming another site (DNS rebinding) gets 421, even with the token."""
    srv, _ = server
    r = httpx.get(srv.url + "/v1/devices", headers={**ADMIN, "Host": host})
    assert r.status_code == status, r.text


def test_configured_host_names_replace_the_defaults(tmp_path: Path) -> None:
    """With http.allowed_hosts, the configured name is accepted and loopback names are not."""
    cfg, store, fleet = gateway(tmp_path, **admin_config(allowed_hosts=["gw.site"]))
    with store, ServerThread(create_app(cfg, store, fleet)) as srv:
        named = httpx.get(srv.url + "/v1/devices", headers={**ADMIN, "Host": "gw.site:8080"})
        loopback = httpx.get(srv.url + "/v1/devices", headers=ADMIN)
    assert (named.status_code, loopback.status_code) == (200, 421)


def test_without_a_configured_admin_token_every_admin_route_is_closed(tmp_path: Path) -> None:
    """No http.admin_tokens_sha256: 401 that names the command making one."""
    cfg, store, fleet = gateway(tmp_path)
    with store, ServerThread(create_app(cfg, store, fleet)) as srv:
        r = httpx.get(srv.url + "/v1/devices", headers=ADMIN)
    assert r.status_code == 401 and "edge-gateway admin-token" in r.json()["error"]


@pytest.mark.parametrize("token", [None, "wrong", "test-admin-token-0123456789"])
def test_artifacts_need_an_enrolled_devices_token(server, token: str | None) -> None:
    """Model files are not public: no token, a wrong one or the admin token get 401."""
    srv, _ = server
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{srv.url}/v1/artifacts/{SHA}", headers=headers).status_code == 401


def test_removed_devices_token_no_longer_downloads(server) -> None:
    """After `devices remove`, the device's token opens nothing."""
    srv, fleet = server
    auth = {"Authorization": f"Bearer {DEVICE_TOKEN}"}
    assert httpx.get(f"{srv.url}/v1/artifacts/{SHA}", headers=auth).status_code == 200
    fleet.remove("cam-1")
    assert httpx.get(f"{srv.url}/v1/artifacts/{SHA}", headers=auth).status_code == 401


@pytest.mark.parametrize(("token", "ok"), [(DEVICE_TOKEN, True), (None, False)])
def test_device_downloader_sends_its_token(server, tmp_path: Path, token, ok: bool) -> None:
    """agent.ota.download with the device's token gets the file; without it, download_failed."""
    srv, _ = server
    dest = tmp_path / "artifact"
    settings = DownloadSettings(download_attempts=1, disk_margin_bytes=0, bearer_token=token)
    url = f"{srv.url}/v1/artifacts/{SHA}"
    if ok:
        download_artifact(url, dest, len(BLOB), settings)
        assert dest.read_bytes() == BLOB
    else:
        with pytest.raises(OtaRejectedError) as err:
            download_artifact(url, dest, len(BLOB), settings)
        assert err.value.reason is Reason.DOWNLOAD_FAILED and "401" in str(err.value)


@pytest.mark.slow
def test_cross_origin_text_plain_deploy_is_refused(site: Site) -> None:
    """Attack (the review's): a browser form POSTs a deploy as text/plain with no token; it gets
    401/415 and no rollout starts."""
    site.sims.start(["sim-a"], site.model_arg(1))
    site.gateway.start()
    site.wait_devices(["sim-a"])
    r = httpx.post(
        f"{site.gateway.url}/v1/rollouts",
        content=b'{"model": "demo-yolov8n", "version": 2, "devices": ["sim-a"]}',
        headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
    )
    assert r.status_code in (401, 415), r.text
    assert site.gateway.get("/v1/rollouts") == []
