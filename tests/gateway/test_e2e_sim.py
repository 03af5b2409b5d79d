"""End to end with real processes: Mosquitto, `edge-gateway serve`, and simulated devices that
speak the real protocol (signatures verified with agent.trust.ota)."""

from __future__ import annotations

import signal

import paho.mqtt.publish as mqtt_publish
import pytest
import yaml

from tests.gateway.conftest import Site, cli, start_rollout, wait_for
from tests.gateway.recorder import Recorder

pytestmark = pytest.mark.slow

DEVICES = ["sim-a", "sim-b", "sim-c"]


def deploy(site: Site, version: int, **opts: object) -> int:
    return start_rollout(site, DEVICES, version, **{"timeout_s": 20, **opts})


def committed(data: dict) -> bool:
    return data.get("state") == "committed"


def test_canary_commits_first_then_the_others(site: Site) -> None:
    """With a canary of 1, the others get their command only after the canary committed."""
    site.sims.start(DEVICES, site.model_arg(1))
    site.gateway.start()
    site.wait_devices(DEVICES)
    rec = Recorder(site.broker.port)
    try:
        rid = deploy(site, 2)
        view = site.wait_rollout(rid)
        assert view["state"] == "succeeded", view
        canary_commit = rec.index("sim-a", "state", committed)
        assert canary_commit is not None
        for dev in ("sim-b", "sim-c"):
            first_cmd = rec.index(dev, "command")
            assert first_cmd is not None and first_cmd > canary_commit
        versions = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
        assert versions == {d: "demo-yolov8n@2" for d in DEVICES}
    finally:
        rec.close()


def test_failing_model_rolls_back_canary_and_never_reaches_others(site: Site) -> None:
    """A model that fails probation on the canary aborts the rollout; b and c never see it."""
    site.sims.start(DEVICES, site.model_arg(1), "--fail-version", "3")
    site.gateway.start()
    site.wait_devices(DEVICES)
    rec = Recorder(site.broker.port)
    try:
        rid = deploy(site, 3)
        view = site.wait_rollout(rid)
        assert view["state"] == "aborted"
        states = {d["device"]: (d["state"], d["reason"]) for d in view["devices"]}
        assert states["sim-a"] == ("failed", "probation_failed")
        assert states["sim-b"][0] == states["sim-c"][0] == "skipped"
        assert rec.commands("sim-b") == rec.commands("sim-c") == []
        versions = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
        assert versions["sim-a"] == "demo-yolov8n@1"
    finally:
        rec.close()


def test_gateway_kill9_mid_rollout_resumes_and_finishes(site: Site) -> None:
    """kill -9 of the gateway while the canary is on probation: after restart the rollout ends."""
    site.sims.start(DEVICES, site.model_arg(1), "--probation", "2")
    site.gateway.start()
    site.wait_devices(DEVICES)
    rid = deploy(site, 2)
    wait_for(
        lambda: site.gateway.get(f"/v1/rollouts/{rid}")["devices"][0]["ota_state"] == "active",
        what="canary on probation",
    )
    site.gateway.kill(signal.SIGKILL)
    site.gateway.start()
    view = site.wait_rollout(rid)
    assert view["state"] == "succeeded", view
    assert view["counts"] == {"committed": 3}


def test_device_killed_mid_rollout_times_out_and_aborts(site: Site) -> None:
    """A device killed during its update times out; the failure threshold aborts the rollout
    and the device that had committed is rolled back to v1."""
    site.sims.start(["sim-a"], site.model_arg(1), "--probation", "0.2")
    site.sims.start(["sim-b"], site.model_arg(1), "--probation", "0.2")
    site.sims.start(["sim-c"], site.model_arg(1), "--probation", "30")
    site.gateway.start()
    site.wait_devices(DEVICES)
    rid = deploy(site, 2, timeout_s=4)
    wait_for(
        lambda: site.gateway.get(f"/v1/rollouts/{rid}")["devices"][2]["ota_state"] == "active",
        what="sim-c on probation",
    )
    site.sims.kill("sim-c")
    view = site.wait_rollout(rid, timeout=30)
    states = {d["device"]: (d["state"], d["reason"]) for d in view["devices"]}
    assert view["state"] == "aborted"
    assert states["sim-c"] == ("timed_out", "timeout")
    assert states["sim-a"][0] == states["sim-b"][0] == "reverted"
    versions = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
    assert versions["sim-a"] == versions["sim-b"] == "demo-yolov8n@1"


def test_lost_commands_are_sent_again_before_the_timeout(site: Site) -> None:
    """Devices that miss their first command (it reached them before they subscribed, or while
    they reconnected) get it again after `resend_s` and the rollout succeeds, not times out."""
    cfg = yaml.safe_load(site.config.read_text())
    cfg["rollout"]["resend_s"] = 1.0
    site.config.write_text(yaml.safe_dump(cfg))
    site.sims.start(DEVICES, site.model_arg(1), "--drop-commands", "1")
    site.gateway.start()
    site.wait_devices(DEVICES)
    rec = Recorder(site.broker.port)
    try:
        rid = deploy(site, 2, timeout_s=15)
        view = site.wait_rollout(rid, timeout=40)
        assert view["state"] == "succeeded", view
        for dev in DEVICES:
            sent = rec.commands(dev)
            assert len(sent) >= 2, sent  # the dropped one, then the same command again
            assert len({c["command_id"] for c in sent}) == 1
    finally:
        rec.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # a device nobody has heard of
        (["demo-yolov8n@2", "--devices", "sim-a,ghost"], "unknown device(s): ghost"),
        # a version that is not in the registry
        (["demo-yolov8n@9", "--devices", "sim-a"], "not in the registry"),
        # not MODEL@VERSION
        (["demo-yolov8n", "--devices", "sim-a"], "expected MODEL@VERSION"),
    ],
)
def test_cli_deploy_refusals(site: Site, args: list[str], message: str) -> None:
    """`edge-gateway deploy` refuses bad targets with a clear message and exit code != 0."""
    site.sims.start(["sim-a"], site.model_arg(1))
    site.gateway.start()
    site.wait_devices(["sim-a"])
    proc = cli(site.config, "deploy", *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_overlapping_rollout_is_refused(site: Site) -> None:
    """A second rollout for devices of a running one is refused, naming device and rollout."""
    site.sims.start(DEVICES, site.model_arg(1), "--probation", "5")
    site.gateway.start()
    site.wait_devices(DEVICES)
    rid = deploy(site, 2)
    proc = cli(site.config, "deploy", "demo-yolov8n@3", "--devices", "sim-c", check=False)
    assert proc.returncode == 1
    assert f"sim-c (rollout {rid})" in proc.stderr and "already in a running rollout" in proc.stderr
    out = cli(site.config, "abort", str(rid)).stdout
    assert f"rollout {rid}" in out


def test_malformed_device_messages_are_counted_and_ignored(site: Site) -> None:
    """Garbage on a device's status/ota/health topics is counted and does not stop tracking."""
    site.sims.start(["sim-a"], site.model_arg(1))
    site.gateway.start()
    site.wait_devices(["sim-a"])
    port = site.broker.port
    for topic, payload in [
        ("edge/sim-a/health", b"not json"),  # not JSON
        ("edge/sim-a/ota/state", b'{"schema": "edge.ota-state/1", "state": "flying"}'),  # bad enum
        ("edge/sim-b/status", b'{"device": "sim-x", "state": "online"}'),  # wrong device
        ("edge/BAD_ID/status", b"{}"),  # device id that breaks the id rule
    ]:
        mqtt_publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=port)
    health = wait_for(
        lambda: (h := site.gateway.get("/v1/health"))["malformed_messages"] >= 4 and h,
        what="4 malformed messages counted",
    )
    assert health["malformed_messages"] == 4
    devices = {d["device"]: d for d in site.gateway.get("/v1/devices")}
    assert devices["sim-a"]["malformed"] == 2 and devices["sim-a"]["online"]
    text = cli(site.config, "devices").stdout
    assert "sim-a" in text and "2 malformed" in text


def test_rollouts_and_devices_views_go_through_the_server(site: Site) -> None:
    """`rollouts` and `devices` ask the running server (one client); with it stopped they
    say so and exit 1."""
    site.sims.start(["sim-a"], site.model_arg(1))
    site.gateway.start()
    site.wait_devices(["sim-a"])
    resp = site.gateway.post(
        "/v1/rollouts",
        {"model": "demo-yolov8n", "version": 2, "devices": ["sim-a"], "timeout_s": 20},
    )
    rid = resp.json()["id"]
    site.wait_rollout(rid)
    out = cli(site.config, "rollouts", str(rid)).stdout
    assert f"rollout {rid}  demo-yolov8n@2  succeeded" in out and "sim-a" in out
    assert "demo-yolov8n@2" in cli(site.config, "devices").stdout
    site.gateway.kill(signal.SIGTERM)
    down = cli(site.config, "devices", check=False)
    assert down.returncode == 1 and "is `edge-gateway serve` running?" in down.stderr


def test_device_on_an_unregistered_model_is_refused(site: Site) -> None:
    """A device whose running model is not in the registry could not be rolled back: refused."""
    site.sims.start(["sim-a"], f"other-model@7:{'b' * 64}")
    site.gateway.start()
    site.wait_devices(["sim-a"])
    proc = cli(site.config, "deploy", "demo-yolov8n@2", "--devices", "sim-a", check=False)
    assert proc.returncode == 1
    assert "runs other-model@7, which is not in the registry" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # the same version again
        (["--version", "4"], "version 4 is not greater than the latest (4)"),
        # a version that goes backwards
        (["--version", "2"], "version 2 is not greater than the latest (4)"),
    ],
)
def test_cli_models_add_refuses_old_versions(site: Site, args: list[str], message: str) -> None:
    """`models add` refuses a version not above the last one, with exit code 1."""
    from tests.gateway.conftest import DEMO_MODEL

    proc = cli(
        site.config, "models", "add", str(DEMO_MODEL), "--name", "demo-yolov8n", *args, check=False
    )
    assert proc.returncode == 1 and message in proc.stderr


def test_cli_models_add_refuses_a_file_that_is_not_a_model(site: Site) -> None:
    """`models add` refuses a file that is neither ONNX nor an engine."""
    bogus = site.tmp / "weights.pt"
    bogus.write_bytes(b"PK\x03\x04 not a model")
    proc = cli(
        site.config, "models", "add", str(bogus), "--name", "x", "--version", "1", check=False
    )
    assert proc.returncode == 1 and "not an ONNX model (.onnx) or a TensorRT engine" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-tensorrt", "10.x"], "--min-tensorrt: String should match pattern"),
        (["--gpu-arch", "8.7"], "--gpu-arch: String should match pattern"),
    ],
)
def test_cli_models_add_refuses_misspelt_compat(site: Site, args: list[str], message: str) -> None:
    """A compat need a device could not compare is refused when the model is added."""
    from tests.gateway.conftest import DEMO_MODEL

    proc = cli(
        site.config,
        *("models", "add", str(DEMO_MODEL), "--name", "demo-yolov8n", "--version", "9", *args),
        check=False,
    )
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_offline_device_is_refused(site: Site) -> None:
    """A device whose last will says offline is refused instead of timing out later."""
    site.sims.start(["sim-a"], site.model_arg(1))
    site.sims.start(["sim-b"], site.model_arg(1))
    site.gateway.start()
    site.wait_devices(["sim-a", "sim-b"])
    site.sims.kill("sim-b")
    wait_for(
        lambda: not {d["device"]: d for d in site.gateway.get("/v1/devices")}["sim-b"]["online"],
        what="sim-b offline (last will)",
    )
    proc = cli(site.config, "deploy", "demo-yolov8n@2", "--devices", "sim-a,sim-b", check=False)
    assert proc.returncode == 1 and "device(s) offline: sim-b" in proc.stderr
