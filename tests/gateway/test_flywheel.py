"""The whole loop, offline, with real processes (issue "Close the loop", Proof):

a real `edge-agent run` daemon with the tiny Florence-2 captures hard frames and uploads them to
a real `edge-gateway serve`; the items are reviewed (accepted, one rejected, one relabelled);
`dataset build` merges them with a base dataset labelled here by the teacher from the demo
clip, keeping a gate set; `edge-agent train` fine-tunes the demo model's own weights
(engines/demo/model.pt); `models sign --gate-against` refuses a deliberately worse model and
passes the fine-tune against the demo model with the production margin; `models import`;
`deploy` to the running daemon, which commits it.

Steps run in parallel where the loop allows (teacher labelling while the daemon captures; the
refused gate while training runs). Step times go to <tmp>/flywheel_times.json and the log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.contracts.dataset import DatasetManifest
from agent.contracts.gate import DEFAULT_CLASS_MARGIN, DEFAULT_MARGIN
from tests.gateway.conftest import REPO, Site, cli, start_rollout, wait_for
from tests.gateway.intake_items import upload
from tests.gateway.sim_device import device_token
from tests.helpers.daemon import DEMO_MANIFEST, demo_config

pytestmark = pytest.mark.slow

DEV = "jet-0"
CLIP = REPO / "engines" / "demo" / "clip.mp4"
DEMO_PT = REPO / "engines" / "demo" / "model.pt"
AGENT = [sys.executable, "-m", "agent"]
NEW_VERSION = 5  # the site's registry holds demo-yolov8n v1..v4


def agent_proc(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*AGENT, *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 600) -> str:
    proc.wait(timeout=timeout)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{proc.args} failed:\n{text[-3000:]}"
    return text


def trust_release_keys(site: Site) -> None:
    """The gateway trusts the lab release key (as it would the workstation's public key)."""
    keys = json.loads(site.keys_file.read_text())
    data = yaml.safe_load(site.config.read_text())
    data["trust"] = {"release_keys": keys["release_keys"]}
    site.config.write_text(yaml.safe_dump(data))


def start_daemon(site: Site) -> tuple[subprocess.Popen[bytes], Path]:
    """The device: demo model v1, OTA on, Florence-2 (tiny) on every frame, uploads on."""
    from tests.fallback.conftest import _cached_export
    from tests.fallback.tiny_florence import cached_tiny_florence

    keys = json.loads(site.keys_file.read_text())
    fallback = {
        "enabled": True,
        "model": str(_cached_export(cached_tiny_florence())[1]),
        "runtime": "onnx-int8",  # no torch import in the worker: starts in seconds
        "task": "<OD>",
        "max_new_tokens": 24,
        "idle_priority": False,
        "policy": {"band_lo": 0.0, "band_hi": 1.0},  # every frame with a box is hard
        "rate": {"per_minute": 120, "burst": 6},
        "capture": {"dir": str(site.tmp / "captures"), "quota_bytes": 16 * 1024 * 1024},
        "upload": {"url": site.gateway.url, "token_env": "EDGE_GATEWAY_TOKEN",
                   "scan_interval_s": 0.5, "retry_min_s": 0.5},
    }  # fmt: skip
    ota = {
        "enabled": True,
        "probation_s": 2.0,
        "probation_min_frames": 3,
        "validation_frames": 2,
        "download_deadline_s": 60,
        "latency_budget_ms": 20000.0,  # a loaded 2-core box, not a latency test
        "gateway_token_env": "EDGE_GATEWAY_TOKEN",
    }
    cfg = demo_config(
        site.tmp / "state", site.broker.port, device=DEV, trust=keys, ota=ota, fallback=fallback
    )
    cfg["cameras"][0]["fps_cap"] = 4.0
    manifest = json.loads(DEMO_MANIFEST.read_text())
    manifest.update(name="demo-yolov8n", version=1)
    (site.tmp / "manifest.json").write_text(json.dumps(manifest))
    cfg["model"]["manifest"] = str(site.tmp / "manifest.json")
    config = site.tmp / "agent.yaml"
    config.write_text(yaml.safe_dump(cfg))
    log = site.tmp / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*AGENT, "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "EDGE_GATEWAY_TOKEN": device_token(DEV)},
            start_new_session=True,
        )
    return proc, log


def upload_labelled(site: Site, base: Path) -> None:
    """One hard frame with teacher boxes, uploaded through the intake as the device does (the
    tiny Florence-2 has random weights: its captures carry no usable box to relabel). It is a
    base frame mirrored, with its boxes mirrored, so it is not a duplicate of the base."""
    import cv2

    image = sorted((base / "images" / "train").glob("*.jpg"))[0]
    lines = (base / "labels" / "train" / f"{image.stem}.txt").read_text().split("\n")
    mirrored = []
    for line in filter(None, lines):
        cls, cx, cy, w, h = line.split()
        mirrored.append(f"{cls} {1 - float(cx):.6f} {cy} {w} {h}")
    ok, jpg = cv2.imencode(".jpg", cv2.imread(str(image))[:, ::-1])
    assert ok and mirrored
    resp = upload(site.gateway.url, DEV, "cam-b", "labelled-0", jpg.tobytes(),
                  "\n".join(mirrored) + "\n", time.time(), ["person", "car"])  # fmt: skip
    assert resp.status_code == 201, resp.text


def review(site: Site) -> dict[str, list[str]]:
    """Accept the daemon's first captures but one, reject one; relabel box 0 of the labelled
    upload to `car` (the teacher's original stays in its sidecar)."""

    def listed() -> list[dict[str, Any]]:
        out = cli(site.config, "dataset", "review", "list", "--device", DEV, "--json").stdout
        return json.loads(out)["items"]

    items = wait_for(
        lambda: (i := listed()) and sum(x["camera"] == "cam-a" for x in i) >= 3 and i,
        240,
        what="3 captures of the daemon and the labelled upload",
    )
    captured = [i["id"] for i in items if i["camera"] == "cam-a"][:3]
    relabel = next(i["id"] for i in items if i["camera"] == "cam-b")
    accept, reject = captured[:2], captured[2]
    cli(site.config, "dataset", "review", "accept", "--ids", ",".join(accept))
    cli(site.config, "dataset", "review", "reject", "--ids", reject, "--reason", "blurred")
    cli(site.config, "dataset", "review", "relabel", "--ids", relabel, "--box", "0=car")
    statuses = {i["id"]: i["status"] for i in listed()}
    assert statuses[reject] == "rejected" and statuses[relabel] == "relabelled"
    assert all(statuses[i] == "accepted" for i in accept)
    return {"accept": accept, "reject": [reject], "relabel": [relabel]}


def sign(site: Site, model: Path, out: Path, dataset: Path) -> subprocess.CompletedProcess[str]:
    """`models sign` on the 'workstation' with the gate against the demo model (v1)."""
    return cli(
        site.config, "models", "sign", str(model), "--release-key",
        str(site.tmp / "keys" / "release.key"), "--out", str(out), "--name", "demo-yolov8n",
        "--version", str(NEW_VERSION), "--gate-against", str(DEMO_MANIFEST),
        "--gate-data", str(dataset), "--margin", str(DEFAULT_MARGIN),
        "--class-margin", str(DEFAULT_CLASS_MARGIN), check=False, timeout=300,
    )  # fmt: skip


def test_flywheel_round(site: Site) -> None:
    """Hard frames -> review -> dataset -> fine-tune -> gate -> sign/import -> deploy."""
    from tests.ota.models import nan

    times: dict[str, float] = {}
    t0 = time.monotonic()
    tmp = site.tmp
    base = tmp / "base"
    labelling = agent_proc(
        ["label", str(CLIP), "-o", str(base), "--classes", "person=person,car=car,truck=car",
         "--conf", "0.5", "--every", "10", "--val-fraction", "0.2", "--gap", "1.0",
         "--no-progress"],
        tmp / "label.log",
    )  # fmt: skip
    trust_release_keys(site)
    site.gateway.start()
    daemon, daemon_log = start_daemon(site)
    try:
        site.wait_devices([DEV], timeout=180)
        finish(labelling, tmp / "label.log")
        times["teacher_labels_base"] = time.monotonic() - t0
        upload_labelled(site, base)
        reviewed = review(site)
        times["capture_upload_review"] = time.monotonic() - t0

        t = time.monotonic()
        ds = tmp / "dataset"
        built = cli(site.config, "dataset", "build", "round1", "--base", str(base), "--device",
                    DEV, "--out", str(ds), "--grow-gate", "5", "--gap", "0")  # fmt: skip
        manifest = DatasetManifest.model_validate_json((ds / "dataset.json").read_text())
        assert manifest.splits["gate"].images == 5, built.stdout
        assert manifest.splits["train"].images >= 10
        kept = [s for s in manifest.sources if s.kind == "intake"]
        used = len(reviewed["accept"]) + len(reviewed["relabel"])
        assert kept and kept[0].items <= used  # the rejected item never reaches the dataset
        times["dataset_build"] = time.monotonic() - t

        t = time.monotonic()
        ft = tmp / "ft"
        training = agent_proc(
            ["train", str(ds), "--base", str(DEMO_PT), "--out", str(ft), "--epochs", "1",
             "--imgsz", "320", "--batch", "8", "--workers", "0", "--lr0", "0.00001",
             "--mosaic", "0", "--warmup-epochs", "0", "--device", "cpu",
             "--name", "demo-yolov8n", "--version", str(NEW_VERSION)],
            tmp / "train.log",
        )  # fmt: skip
        worse = nan(REPO / "engines/demo/model.onnx", tmp / "worse.onnx")
        refused = sign(site, worse, tmp / "worse.signed.json", ds)  # meanwhile: the gate refuses
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "gate: refused" in refused.stderr and "mAP50-95" in refused.stdout
        assert not (tmp / "worse.signed.json").exists()
        times["gate_refuses_worse"] = time.monotonic() - t
        finish(training, tmp / "train.log")
        times["train"] = time.monotonic() - t
        report = json.loads((ft / "training_report.json").read_text())
        assert len(report["epochs"]) == 1 and report["base_sha256"] and report["final_metrics"]

        t = time.monotonic()
        signed = sign(site, ft / "model.onnx", tmp / "ft.signed.json", ds)
        print(signed.stdout, signed.stderr)
        assert signed.returncode == 0, signed.stdout + signed.stderr
        gate = json.loads((tmp / "ft.signed.json").read_text())["manifest"]["gate"]
        assert gate["gate_set_sha256"] == manifest.gate_sha256
        assert gate["replaces"]["version"] == 1 and gate["images"] == 5
        times["gate_passes_and_sign"] = time.monotonic() - t
        imported = cli(site.config, "models", "import", str(ft / "model.onnx"), "--manifest",
                       str(tmp / "ft.signed.json"))  # fmt: skip
        assert "gate set sha256" in imported.stdout

        t = time.monotonic()
        rid = start_rollout(site, [DEV], NEW_VERSION, canary=1, timeout_s=120)
        view = site.wait_rollout(rid, timeout=240)
        assert view["state"] == "succeeded", json.dumps(view, indent=1)
        assert (
            view["gate"]["replaces"]["demo-yolov8n@1"]["map50_95"]
            == gate["replaces_figures"]["map50_95"]
        )
        shown = cli(site.config, "rollouts", str(rid)).stdout
        assert "gate set" in shown and "replaces demo-yolov8n@1" in shown
        wait_for(
            lambda: (
                {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}[DEV]
                == f"demo-yolov8n@{NEW_VERSION}"
            ),
            60,
            what="the device on the fine-tuned model",
        )
        times["deploy_commit"] = time.monotonic() - t
    finally:
        for proc in (daemon, labelling):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    times["total"] = time.monotonic() - t0
    figures = {"candidate": gate["figures"], "replaces": gate["replaces_figures"], "times": times}
    (tmp / "flywheel_times.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1), daemon_log)
