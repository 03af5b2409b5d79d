"""The release key off the gateway: sign on a workstation, import on the gateway (real CLI runs,
real keys, real ONNX files); manifests expire by default; ONNX external data is refused."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from agent.contracts.manifest import Manifest
from agent.contracts.ota import SignedManifest, parse_rfc3339
from agent.gateway.db import Store
from agent.gateway.keys import KeyRole, key_path, load_key_file
from agent.trust.ota import sign_manifest, verify_manifest
from agent.util.files import file_sha256
from tests.gateway.conftest import DEMO_MODEL, cli, write_config
from tests.helpers.external_data import external_data_model

KEY_LINE = re.compile(r"^\s+([0-9a-f]{16}): (\S+)$", re.MULTILINE)


def release_key(workstation: Path, name: str = "release.key") -> tuple[Path, dict[str, str]]:
    """`keys init --release-only` on a workstation without any gateway config."""
    out = workstation / name
    proc = cli(
        workstation / "no-such-gateway.yaml", "keys", "init", "--release-only", "--out", str(out)
    )
    kid, pub = KEY_LINE.search(proc.stdout).groups()  # type: ignore[union-attr]
    return out, {kid: pub}


def sign(workstation: Path, key: Path, model: Path, *extra: str, version: int = 2) -> Path:
    """`models sign` on the workstation (its --config names a file that does not exist)."""
    out = workstation / f"manifest-{version}.json"
    cli(
        workstation / "no-such-gateway.yaml",
        "models", "sign", str(model), "--name", "demo-yolov8n", "--version", str(version),
        "--release-key", str(key), "--out", str(out), *extra,
    )  # fmt: skip
    return out


@pytest.fixture
def machines(tmp_path: Path) -> dict[str, object]:
    """A workstation with the release key; a gateway with only its gateway key and the
    workstation's public key in trust.release_keys."""
    ws = tmp_path / "workstation"
    ws.mkdir()
    key, trusted = release_key(ws)
    gw = tmp_path / "gateway"
    gw.mkdir()
    config = write_config(gw, 1883, 18080, trust={"release_keys": trusted})
    cli(config, "keys", "init", "--gateway-only")
    return {"ws": ws, "key": key, "trusted": trusted, "gw": gw, "config": config}


def test_workstation_signs_and_gateway_imports_without_release_key(machines: dict) -> None:
    """A manifest signed on the workstation imports on a gateway that holds only its own key."""
    manifest = sign(machines["ws"], machines["key"], DEMO_MODEL, "--generation", "4")
    proc = cli(machines["config"], "models", "import", str(DEMO_MODEL), "--manifest", str(manifest))
    assert "imported demo-yolov8n@2" in proc.stdout
    keys_dir = machines["gw"] / "keys"
    assert not key_path(keys_dir, KeyRole.RELEASE).exists()
    assert key_path(keys_dir, KeyRole.GATEWAY).exists()
    with Store(machines["gw"] / "data" / "gateway.sqlite3") as store:
        row = store.model("demo-yolov8n", 2)
    assert row is not None
    m = verify_manifest(SignedManifest.model_validate(row.signed), machines["trusted"])
    assert m.generation == 4 and m.kind == "detector"


def test_signed_manifest_expires_after_365_days_by_default(machines: dict) -> None:
    """`models sign` without --expires-days writes an expiry about a year ahead."""
    manifest = sign(machines["ws"], machines["key"], DEMO_MODEL)
    m = SignedManifest.model_validate_json(manifest.read_text()).manifest
    assert m.expires is not None
    ahead = parse_rfc3339(m.expires) - datetime.now(timezone.utc)
    assert timedelta(days=364) < ahead <= timedelta(days=365)


def _edit_version(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["manifest"]["version"] = 9
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("stranger", "manifest_unknown_key"),  # signed by a release key the gateway does not trust
        ("edited", "bad_manifest_signature"),  # version changed after signing
        ("other-file", "is not the signed artifact"),  # the manifest of another file
        ("expired", "expired_manifest"),  # signed with an expiry already past
    ],
)
def test_import_refusals(machines: dict, tmp_path: Path, case: str, message: str) -> None:
    """`models import` refuses what the trusted release key did not sign for this file."""
    key, model, extra = machines["key"], DEMO_MODEL, ()
    if case == "stranger":
        key, _ = release_key(machines["ws"], "stranger.key")
    if case == "expired":
        extra = ("--expires-days", "0.000001")
    manifest = sign(machines["ws"], key, model, *extra)
    if case == "edited":
        _edit_version(manifest)
    if case == "other-file":
        model = tmp_path / "other.onnx"
        shutil.copyfile(DEMO_MODEL, model)
        with model.open("ab") as f:
            f.write(b"\0")
    proc = cli(
        machines["config"], "models", "import", str(model), "--manifest", str(manifest), check=False
    )
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert json.loads(cli(machines["config"], "models", "list", "--json").stdout) == []


def test_models_add_on_a_gateway_without_release_key_says_to_import(machines: dict) -> None:
    """On a gateway-only gateway, `models add` fails and points at sign / import."""
    proc = cli(
        machines["config"],
        "models", "add", str(DEMO_MODEL), "--name", "demo-yolov8n", "--version", "1",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "models import" in proc.stderr


def test_keys_export_carries_the_trusted_release_key(machines: dict) -> None:
    """`keys export` on a gateway-only gateway gives devices the workstation's release key."""
    out = yaml.safe_load(cli(machines["config"], "keys", "export").stdout)["trust"]
    assert out["release_keys"] == machines["trusted"]
    assert len(out["gateway_keys"]) == 1


def test_import_and_sign_refuse_onnx_external_data(machines: dict, tmp_path: Path) -> None:
    """The workstation will not sign, nor the gateway import, a model with external data."""
    evil = external_data_model(tmp_path / "evil.onnx")
    proc = cli(
        machines["ws"] / "none.yaml",
        "models", "sign", str(evil), "--name", "evil", "--version", "1",
        "--release-key", str(machines["key"]), "--out", str(tmp_path / "m.json"),
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "escapes the model directory" in proc.stderr
    # a manifest signed around the check (release key used directly) is still refused at import
    m = Manifest(
        name="evil", version=1, format="onnx", sha256=file_sha256(evil),
        length=evil.stat().st_size, input_size=(32, 32), class_names=["person", "car"],
        created="2026-11-29T00:00:00Z",
    )  # fmt: skip
    manifest = tmp_path / "hand.json"
    manifest.write_text(
        sign_manifest(m, load_key_file(machines["key"])).model_dump_json(by_alias=True)
    )
    proc = cli(
        machines["config"], "models", "import", str(evil), "--manifest", str(manifest), check=False
    )
    assert proc.returncode != 0 and "escapes the model directory" in proc.stderr
