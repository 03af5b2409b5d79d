"""Attacks on the gateway's registry that work through `models add` today: a model whose
tensors read files outside its directory, and manifests that never expire (real CLI runs,
real keys, real ONNX files)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.contracts.ota import parse_rfc3339
from tests.gateway.conftest import DEMO_MODEL, cli, write_config
from tests.helpers.external_data import external_data_model


def test_models_add_expires_after_365_days_by_default(tmp_path: Path) -> None:
    """The lab's `models add` also signs manifests that expire, a year ahead by default."""
    config = write_config(tmp_path, 1883, 18080)
    cli(config, "keys", "init")
    cli(config, "models", "add", str(DEMO_MODEL), "--name", "demo-yolov8n", "--version", "1")
    rows = json.loads(cli(config, "models", "list", "--json").stdout)
    assert rows[0]["expires"] is not None
    ahead = parse_rfc3339(rows[0]["expires"]) - datetime.now(timezone.utc)
    assert timedelta(days=364) < ahead <= timedelta(days=365)


def test_models_add_refuses_onnx_external_data_escaping_the_model_dir(tmp_path: Path) -> None:
    """A model whose initializer reads ../../etc/passwd is refused at `models add`."""
    config = write_config(tmp_path, 1883, 18080)
    cli(config, "keys", "init")
    evil = external_data_model(tmp_path / "evil.onnx")
    proc = cli(
        config,
        "models", "add", str(evil), "--name", "evil", "--version", "1",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "escapes the model directory" in proc.stderr, proc.stdout
    assert json.loads(cli(config, "models", "list", "--json").stdout) == []
