"""A gateway restored from an old backup of its state file resumes rollouts: the device reports
its last accepted sequence and the gateway numbers above it (real Mosquitto, real
`edge-gateway serve`, a real `edge-agent run` daemon on the demo clip)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.gateway.db import Store
from agent.gateway.devices import DeviceBook
from tests.gateway.conftest import DEMO_MODEL, REPO, Site, cli, start_rollout
from tests.gateway.sim_device import device_token
from tests.helpers.daemon import DEMO_MANIFEST, demo_config
from tests.ota.models import retagged

pytestmark = pytest.mark.slow

DEVICE = "jet-0"


@pytest.fixture
def daemon(site: Site) -> Iterator[subprocess.Popen[bytes]]:
    """One real daemon trusting the site's keys, running the registry's v1, short probation."""
    keys = json.loads(site.keys_file.read_text())
    ota = {
        "enabled": True,
        "probation_s": 1.0,
        "probation_min_frames": 2,
        "validation_frames": 2,
        "latency_budget_ms": 20000.0,  # a loaded 2-core CI box, not a latency test
        "gateway_token_env": "EDGE_GATEWAY_TOKEN",  # artifacts need the device's token
    }
    cfg = demo_config(site.tmp / "state", site.broker.port, device=DEVICE, ota=ota, trust=keys)
    cfg["cameras"][0]["fps_cap"] = 4.0
    manifest = json.loads(DEMO_MANIFEST.read_text())
    manifest.update(name="demo-yolov8n", version=1)
    (site.tmp / "manifest.json").write_text(json.dumps(manifest))
    cfg["model"]["manifest"] = str(site.tmp / "manifest.json")
    config = site.tmp / "agent.yaml"
    config.write_text(yaml.safe_dump(cfg))
    with (site.tmp / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "EDGE_GATEWAY_TOKEN": device_token(DEVICE)},
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def restore(backup: Path, db: Path) -> None:
    """Put the backup in place of the state file (WAL and shared-memory files dropped)."""
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, db)


def test_gateway_restored_from_old_backup_resumes_rollouts(
    site: Site, daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """After a deploy, restoring the state file from before it and restarting `serve` still
    gets the next rollout accepted (not refused as an old sequence)."""
    db = site.cfg.db_path
    backup = tmp_path / "gateway.sqlite3.bak"
    shutil.copyfile(db, backup)  # taken before any deploy: the device's sequences are unknown
    v5 = retagged(DEMO_MODEL, tmp_path / "v5.onnx", "v5")
    site.gateway.start()
    site.wait_devices([DEVICE], timeout=90)
    rid = start_rollout(site, [DEVICE], 2, timeout_s=90)
    assert site.wait_rollout(rid, timeout=120)["state"] == "succeeded"

    site.gateway.kill(signal.SIGTERM)
    restore(backup, db)
    cli(site.config, "models", "add", str(v5), "--name", "demo-yolov8n", "--version", "5")
    site.gateway.start()
    site.wait_devices([DEVICE], timeout=60)
    rid = start_rollout(site, [DEVICE], 5, timeout_s=90)
    view = site.wait_rollout(rid, timeout=120)
    assert view["state"] == "succeeded", view
    with Store(db) as store:
        row = DeviceBook(store).get(DEVICE)
    assert row is not None and row.ota is not None and row.ota["last_sequence"] == 2
