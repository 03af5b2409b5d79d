"""Going back: `edge-gateway rollback ID` sends the devices of a finished rollout the signed
`rollback` to their kept previous model; `deploy` refuses a version at or below a device's
committed floor before anything is sent; `rollouts` shows the device's own words for a failure;
`--config` works after the sub-command. Real gateway, Mosquitto and simulated devices."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.gateway.conftest import ADMIN_TOKEN, REPO, Site, cli, start_rollout

pytestmark = pytest.mark.slow

DEVICES = ["back-a", "back-b"]


def db_rows(site: Site, sql: str) -> list[tuple]:
    with sqlite3.connect(site.cfg.db_path) as db:
        return db.execute(sql).fetchall()


def test_rollback_floor_and_reason_text(site: Site) -> None:
    site.sims.start(DEVICES, site.model_arg(1), "--fail-version", "4")
    site.gateway.start()
    site.wait_devices(DEVICES)
    rid = start_rollout(site, DEVICES, 2, timeout_s=20)
    assert site.wait_rollout(rid)["state"] == "succeeded"

    # the old version is refused by the gateway, naming the versions, before anything is sent
    resp = site.gateway.post(
        "/v1/rollouts", {"model": "demo-yolov8n", "version": 1, "devices": DEVICES}
    )
    assert resp.status_code == 409, resp.text
    assert "v1 is not above" in resp.text and "back-a (runs demo-yolov8n@2" in resp.text
    assert "edge-gateway rollback" in resp.text
    assert db_rows(site, "SELECT COUNT(*) FROM rollouts") == [(1,)]

    # --config after the sub-command; the rollback goes in waves and ends with both on v1
    back = subprocess.run(
        [sys.executable, "-m", "agent.gateway.cli", "rollback", str(rid), "--wait"]
        + ["--canary", "1", "--config", str(site.config)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        env={**os.environ, "EDGE_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    assert back.returncode == 0, back.stdout + back.stderr
    assert "back from demo-yolov8n@2" in back.stdout and "succeeded" in back.stdout
    rows = db_rows(site, "SELECT id, action, undoes, state FROM rollouts ORDER BY id")
    assert rows == [(1, "deploy", None, "succeeded"), (2, "rollback", 1, "succeeded")]
    slots = db_rows(site, "SELECT device, wave, state FROM rollout_devices WHERE rollout_id=2")
    assert sorted(slots) == [("back-a", 0, "committed"), ("back-b", 1, "committed")]
    running = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
    assert running == {d: "demo-yolov8n@1" for d in DEVICES}

    # twice: nothing left to take back; v2 again: below the floor the devices keep
    again = cli(site.config, "rollback", str(rid), check=False)
    assert again.returncode == 1 and "runs demo-yolov8n@1 now" in again.stderr
    resp = site.gateway.post(
        "/v1/rollouts", {"model": "demo-yolov8n", "version": 2, "devices": DEVICES}
    )
    assert resp.status_code == 409 and "floor v2" in resp.text, resp.text

    # a failing version: `rollouts` prints the device's reason code and its words
    rid = start_rollout(site, DEVICES, 4, timeout_s=20)
    assert site.wait_rollout(rid)["state"] == "aborted"
    shown = cli(site.config, "rollouts", str(rid)).stdout
    assert "probation_failed: simulated: no detections on probation" in shown, shown


def test_shipped_one_machine_config_is_valid_and_loopback() -> None:
    """configs/gateway.yaml (the one-machine walkthrough) loads and binds loopback only."""
    from agent.gateway.config import load_gateway_config

    cfg = load_gateway_config(REPO / "configs" / "gateway.yaml")
    assert cfg.http.host == "127.0.0.1" and cfg.mqtt.host == "127.0.0.1"
