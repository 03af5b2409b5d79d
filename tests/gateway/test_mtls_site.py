"""A whole site over the shipped broker config's mutual-TLS listener: certificates from
`make-certs.sh`, the shipped `mosquitto.conf` and ACL, `edge-gateway serve` with `mqtt.tls`
(CN `gateway`), and a real `edge-agent run` (CN = its device id) with OTA and gateway acks on.

One rollout commits, and the detection archive's signed acks drain the device's outbox: every
message crossed the broker as the ACL allows and nothing else.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.gateway.conftest import Site, start_rollout, wait_for
from tests.gateway.sim_device import device_token
from tests.helpers.daemon import DEMO_MANIFEST, DaemonProcess, demo_config
from tests.publish.shipped import ShippedMosquitto, make_certs

pytestmark = pytest.mark.slow

DEV = "jet-tls"


@pytest.fixture
def tls_site(tmp_path: Path, site_template: Path) -> Iterator[tuple[Site, Path]]:
    """The shipped broker on mTLS with a fleet CA, and a gateway configured to use it."""
    certs = tmp_path / "certs"
    make_certs(certs, ["ca"], ["server", "localhost", "127.0.0.1"], ["device", DEV], ["gateway"])
    with ShippedMosquitto(tmp_path / "broker", certs) as broker:
        site = Site(tmp_path, broker, site_template)
        cfg = yaml.safe_load(site.config.read_text())
        cfg["mqtt"] = {
            "host": "localhost",
            "port": broker.port,
            "client_id": "gateway",
            "tls": {
                "ca_file": str(certs / "ca.crt"),
                "cert_file": str(certs / "gateway.crt"),
                "key_file": str(certs / "gateway.key"),
            },
        }
        cfg["archive"] = {"enabled": True, "flush_interval_s": 0.1}
        site.config.write_text(yaml.safe_dump(cfg))
        try:
            yield site, certs
        finally:
            site.gateway.kill()


def agent_config(site: Site, certs: Path, state: Path) -> dict[str, object]:
    keys = json.loads(site.keys_file.read_text())
    cfg = demo_config(
        state,
        site.broker.port,
        device=DEV,
        outbox={"require_gateway_ack": True, "gateway_ack_timeout_s": 3.0},
        trust=keys,
        ota={
            "enabled": True,
            "probation_s": 1.0,
            "probation_min_frames": 2,
            "validation_frames": 2,
            "latency_budget_ms": 20000.0,  # a loaded 2-core CI box, not a latency test
            "gateway_token_env": "EDGE_GATEWAY_TOKEN",
        },
    )
    cfg["mqtt"] = {  # type: ignore[index]
        **cfg["mqtt"],  # type: ignore[dict-item]
        "host": "localhost",
        "tls": {
            "ca_file": str(certs / "ca.crt"),
            "cert_file": str(certs / f"device-{DEV}.crt"),
            "key_file": str(certs / f"device-{DEV}.key"),
        },
    }
    cfg["cameras"][0]["fps_cap"] = 4.0  # type: ignore[index]
    manifest = json.loads(DEMO_MANIFEST.read_text())
    manifest.update(name="demo-yolov8n", version=1)  # the registry's v1
    state.parent.mkdir(parents=True, exist_ok=True)
    (state.parent / "manifest.json").write_text(json.dumps(manifest))
    cfg["model"]["manifest"] = str(state.parent / "manifest.json")  # type: ignore[index]
    return cfg


def outbox_rows(state: Path) -> int:
    with sqlite3.connect(state / "outbox.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def archived(site: Site) -> int:
    if not site.cfg.archive_path.exists():
        return 0
    with sqlite3.connect(site.cfg.archive_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM detections").fetchone()[0])


def test_rollout_and_archive_acks_over_the_shipped_mutual_tls_broker(
    tls_site: tuple[Site, Path], tmp_path: Path
) -> None:
    """Deploy v2 over mTLS to a real daemon; it commits, and signed acks drain its outbox."""
    site, certs = tls_site
    site.gateway.start()
    state = tmp_path / "dev" / "state"
    env = {"EDGE_GATEWAY_TOKEN": device_token(DEV)}
    with DaemonProcess(tmp_path / "dev", agent_config(site, certs, state), env=env) as d:
        site.wait_devices([DEV], timeout=60)
        rid = start_rollout(site, [DEV], 2, timeout_s=120)
        view = site.wait_rollout(rid, timeout=150)
        assert view["state"] == "succeeded", f"{view}\n{d.log()[-3000:]}"
        wait_for(lambda: archived(site) >= 20, 60, what="detections archived over mTLS")
        wait_for(lambda: outbox_rows(state) < 10, 60, what="signed acks draining the outbox")
    health = site.gateway.get("/v1/health")
    assert health["archive"]["acks_sent"] >= 1 and health["archive"]["malformed"] == 0
    assert os.path.exists(certs / "gateway.crt")
