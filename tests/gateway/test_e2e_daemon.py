"""The issue's end-to-end scenarios with real processes: Mosquitto, `edge-gateway serve` and
three real `edge-agent run` daemons on the demo clip (devices jet-0, jet-1, jet-2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.contracts.payloads import DetectionMessage
from tests.gateway.conftest import REPO, Site, start_rollout, wait_for
from tests.gateway.recorder import Recorder
from tests.gateway.sim_device import device_token
from tests.helpers.daemon import DEMO_MANIFEST, demo_config
from tests.helpers.mqtt import Recorder as MqttRecorder

pytestmark = pytest.mark.slow

DEVICES = ["jet-0", "jet-1", "jet-2"]


AGENT_CMD = [sys.executable, "-m", "agent"]  # `edge-agent`


class Fleet3:
    """Three real `edge-agent run` daemons trusting the site's keys, with short OTA probation."""

    def __init__(self, site: Site) -> None:
        keys = json.loads(site.keys_file.read_text())
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.workdir: dict[str, Path] = {}
        for dev in DEVICES:
            cfg = demo_config(
                site.tmp / f"state-{dev}",
                site.broker.port,
                device=dev,
                trust=keys,
                ota={
                    "enabled": True,
                    "probation_s": 2.0,
                    "probation_min_frames": 3,
                    "validation_frames": 2,
                    "download_deadline_s": 60,
                    "latency_budget_ms": 20000.0,  # a loaded 2-core CI box, not a latency test
                    "gateway_token_env": "EDGE_GATEWAY_TOKEN",  # artifacts need it
                },
            )
            cfg["cameras"][0]["fps_cap"] = 4.0
            workdir = site.tmp / dev
            workdir.mkdir()
            self.workdir[dev] = workdir
            # the demo model as demo-yolov8n v1 (the registry's v1), whatever its shipped
            # manifest numbers it
            manifest = json.loads(DEMO_MANIFEST.read_text())
            manifest.update(name="demo-yolov8n", version=1)
            (workdir / "manifest.json").write_text(json.dumps(manifest))
            cfg["model"]["manifest"] = str(workdir / "manifest.json")
            config = workdir / "agent.yaml"
            config.write_text(yaml.safe_dump(cfg))
            with (workdir / "daemon.log").open("wb") as log:
                self.procs[dev] = subprocess.Popen(
                    [*AGENT_CMD, "run", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env={**os.environ, "EDGE_GATEWAY_TOKEN": device_token(dev)},
                )

    def explain(self, site: Site, rid: int) -> Callable[[], str]:
        """What a failed wait shows: the rollout view, then the OTA lines of each device log."""

        def text() -> str:
            out = [json.dumps(site.gateway.get(f"/v1/rollouts/{rid}"), indent=1)]
            for dev in DEVICES:
                lines = (self.workdir[dev] / "daemon.log").read_text(errors="replace").splitlines()
                ota = [ln for ln in lines if "OTA" in ln or "error" in ln.lower()]
                out += [f"--- {dev} ({len(lines)} log lines)", *ota[-15:]]
            return "\n".join(out)

        return text

    def kill(self, dev: str) -> None:
        proc = self.procs[dev]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for dev in self.procs:
            self.kill(dev)


@pytest.fixture
def fleet(site: Site) -> Iterator[Fleet3]:
    f = Fleet3(site)
    site.gateway.start()
    try:
        site.wait_devices(DEVICES, timeout=90)
        yield f
    finally:
        f.stop()


def deploy(site: Site, version: int, **opts: object) -> int:
    return start_rollout(site, DEVICES, version, **{"timeout_s": 60, **opts})


def test_canary_then_others_and_no_detection_lost(site: Site, fleet: Fleet3) -> None:
    """Canary commits first, then the others; all end on v2; every seq arrives on every
    device across its swap."""
    ota = Recorder(site.broker.port)
    dets = MqttRecorder(site.broker.port, ["edge/+/cameras/+/detections"])
    try:
        rid = deploy(site, 2)
        view = site.wait_rollout(rid, timeout=180)
        assert view["state"] == "succeeded", view
        canary_commit = ota.index("jet-0", "state", lambda d: d.get("state") == "committed")
        assert canary_commit is not None
        for dev in ("jet-1", "jet-2"):
            first = ota.index(dev, "command")
            assert first is not None and first > canary_commit
        wait_for(
            lambda: all(
                any(
                    DetectionMessage.model_validate_json(m.payload).model.version == 2
                    for m in dets.on(f"edge/{dev}/cameras/cam-a/detections")
                )
                for dev in DEVICES
            ),
            30,
            what="v2 detections from every device",
        )
    finally:
        ota.close()
        dets.close()
    for dev in DEVICES:
        msgs = [
            DetectionMessage.model_validate_json(m.payload)
            for m in dets.on(f"edge/{dev}/cameras/cam-a/detections")
        ]
        by_boot: dict[str, list[int]] = {}
        for m in msgs:
            by_boot.setdefault(m.boot_id, []).append(m.seq)
        assert len(by_boot) == 1, f"{dev} restarted"
        seqs = next(iter(by_boot.values()))
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{dev} lost detections"
        versions = [m.model.version for m in msgs]
        assert versions == sorted(versions) and versions[-1] == 2
    devices = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
    assert devices == {d: "demo-yolov8n@2" for d in DEVICES}


def test_garbage_model_fails_on_canary_and_never_reaches_others(site: Site, fleet: Fleet3) -> None:
    """A model whose outputs are NaN fails on the canary; the rollout aborts; jet-1 and jet-2
    never receive a command and every device still runs v1."""
    ota = Recorder(site.broker.port)
    try:
        rid = deploy(site, 4)
        view = site.wait_rollout(rid, timeout=120)
        assert view["state"] == "aborted"
        states = {d["device"]: d["state"] for d in view["devices"]}
        assert states == {"jet-0": "failed", "jet-1": "skipped", "jet-2": "skipped"}
        assert ota.commands("jet-1") == ota.commands("jet-2") == []
    finally:
        ota.close()
    devices = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
    assert devices == {d: "demo-yolov8n@1" for d in DEVICES}


def test_gateway_kill9_mid_rollout_resumes_and_finishes(site: Site, fleet: Fleet3) -> None:
    """kill -9 of the gateway while the canary updates; after restart the rollout finishes."""
    rid = deploy(site, 2)
    wait_for(
        lambda: (
            site.gateway.get(f"/v1/rollouts/{rid}")["devices"][0]["ota_state"]
            in ("active", "validating", "loading")
        ),
        60,
        every=0.05,
        what="canary swapping",
        explain=fleet.explain(site, rid),
    )
    site.gateway.kill(signal.SIGKILL)
    site.gateway.start()
    view = site.wait_rollout(rid, timeout=180)
    assert view["state"] == "succeeded", fleet.explain(site, rid)()
    assert view["counts"] == {"committed": 3}


def test_device_killed_mid_rollout_times_out_and_rolls_back(site: Site, fleet: Fleet3) -> None:
    """jet-2 killed during its update times out; the threshold aborts the rollout and the
    devices that committed are rolled back to v1."""
    rid = deploy(site, 2, timeout_s=25)
    wait_for(
        lambda: (
            site.gateway.get(f"/v1/rollouts/{rid}")["devices"][2]["state"] in ("sent", "updating")
        ),
        120,
        every=0.05,
        what="jet-2 commanded",
    )
    fleet.kill("jet-2")
    view = site.wait_rollout(rid, timeout=180)
    states = {d["device"]: (d["state"], d["reason"]) for d in view["devices"]}
    assert view["state"] == "aborted", view
    assert states["jet-2"] == ("timed_out", "timeout")
    assert states["jet-0"][0] == "reverted"
    devices = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
    assert devices["jet-0"] == "demo-yolov8n@1"
