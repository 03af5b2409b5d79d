"""The Florence-2 fallback model over the air, end to end with real processes: a Florence-2
archive packed by `edge-agent florence pack`, signed and registered as kind `florence2`,
deployed by a real `edge-gateway serve` to a real `edge-agent run` with the tiny Florence-2,
which unpacks, tries, swaps it in between two jobs and commits it after probation; then a
signed but broken archive (an ONNX file inside whose weights point at /etc/passwd), which
the device refuses with `bad_archive` while the committed model keeps running."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.contracts.ota import OtaStateMessage
from agent.contracts.payloads import DetectionMessage
from tests.fallback.tiny_florence import cached_tiny_florence
from tests.gateway.conftest import REPO, Site, cli
from tests.gateway.sim_device import device_token
from tests.helpers.daemon import DEMO_MANIFEST, DaemonProcess, demo_config
from tests.helpers.external_data import external_data_model
from tests.helpers.mqtt import Recorder

pytestmark = pytest.mark.slow

DEV = "jet-0"
F2_STATE = f"edge/{DEV}/ota/florence2/state"
DETECTIONS = f"edge/{DEV}/cameras/cam-a/detections"


def _pack(src: Path, out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "florence", "pack", str(src), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sha256" in proc.stdout
    return out


def _register(site: Site, archive: Path, version: int) -> None:
    cli(
        site.config,
        "models", "add", str(archive), "--name", "florence2-tiny", "--version", str(version),
        "--kind", "florence2",
    )  # fmt: skip


def _daemon(site: Site, tiny: Path) -> DaemonProcess:
    keys = json.loads(site.keys_file.read_text())
    cfg = demo_config(
        site.tmp / "state",
        site.broker.port,
        device=DEV,
        trust=keys,
        ota={
            "enabled": True,
            "download_deadline_s": 60,
            "gateway_token_env": "EDGE_GATEWAY_TOKEN",
            "florence2": {"probation_s": 2.0, "probation_min_jobs": 1, "validation_frames": 1},
        },
        fallback={
            "enabled": True,
            "model": str(tiny),
            "runtime": "torch-fp32",
            "task": "<CAPTION>",
            "max_new_tokens": 8,
            "idle_priority": False,
            "worker": "thread",  # one torch import for both models: the suite stays lean
            "policy": {"band_lo": 0.0, "band_hi": 1.0},  # every detection is uncertain
            "rate": {"per_minute": 120, "burst": 2},
            "capture": {"enabled": False},
        },
    )
    cfg["cameras"][0]["fps_cap"] = 4.0
    manifest = json.loads(DEMO_MANIFEST.read_text())  # the registry's demo-yolov8n v1
    manifest.update(name="demo-yolov8n", version=1)
    (site.tmp / "manifest.json").write_text(json.dumps(manifest))
    cfg["model"]["manifest"] = str(site.tmp / "manifest.json")
    return DaemonProcess(site.tmp / "daemon", cfg, env={"EDGE_GATEWAY_TOKEN": device_token(DEV)})


def _deploy(site: Site, version: int) -> dict:
    body = {"model": "florence2-tiny", "version": version, "devices": [DEV], "timeout_s": 420}
    body |= {"canary": 1, "wave_size": 1, "max_failures": 1}
    resp = site.gateway.post("/v1/rollouts", body)
    assert resp.status_code == 201, resp.text
    return site.wait_rollout(int(resp.json()["id"]), timeout=480)


def _states(rec: Recorder) -> list[OtaStateMessage]:
    return [OtaStateMessage.model_validate_json(m.payload) for m in rec.on(F2_STATE)]


def test_florence_model_rolls_out_and_a_broken_archive_is_refused(site: Site) -> None:
    tiny = site.tmp / "florence-v1"
    shutil.copytree(cached_tiny_florence(), tiny)
    v2 = site.tmp / "florence-v2"
    shutil.copytree(tiny, v2)
    (v2 / "RELEASE.txt").write_text("florence2-tiny v2\n")
    _register(site, _pack(v2, site.tmp / "florence2-tiny-v2.tar"), 2)
    broken = site.tmp / "florence-v3"
    shutil.copytree(tiny, broken)
    external_data_model(broken / "encoder.onnx", location="../../../../etc/passwd")
    _register(site, _pack(broken, site.tmp / "florence2-tiny-v3.tar"), 3)

    rec = Recorder(site.broker.port, [F2_STATE, DETECTIONS])
    with _daemon(site, tiny) as daemon:
        site.gateway.start()
        site.wait_devices([DEV], timeout=120)
        view = _deploy(site, 2)
        assert view["state"] == "succeeded", (view, daemon.log()[-3000:])
        rec.wait_for(
            lambda ms: any(
                m.topic == DETECTIONS
                and b'"florence2"' in m.payload
                and DetectionMessage.model_validate_json(m.payload).model.version == 2
                for m in ms
            ),
            timeout=120,
        )
        view = _deploy(site, 3)
        assert view["state"] == "aborted", view
        refused = [s for s in _states(rec) if s.model and s.model.version == 3]
        assert refused[-1].state.value == "failed" and refused[-1].reason.value == "bad_archive"
        assert "external" in (refused[-1].detail or "")
    rec.close()
    f2 = [
        DetectionMessage.model_validate_json(m.payload)
        for m in rec.on(DETECTIONS)
        if b'"florence2"' in m.payload
    ]
    assert [m.seq for m in f2] == list(range(len(f2)))  # the swap lost no florence2 message
    versions = [m.model.version for m in f2]
    assert versions == sorted(versions) and versions[-1] == 2  # v3 never ran
    assert {m.model.name for m in f2 if m.model.version == 2} == {"florence2-tiny"}
    committed = [s for s in _states(rec) if s.state.value == "committed"]
    assert committed and committed[-1].model is not None and committed[-1].model.version == 2
    unpacked = list((site.tmp / "state" / "models-florence2").rglob("RELEASE.txt"))
    assert len(unpacked) == 1  # v2 unpacked under the slot's store; nothing of v3 left
    assert not list((site.tmp / "state" / "models-florence2").rglob("encoder.onnx"))
