"""Camera config pushed from the gateway to a real daemon: `edge-gateway config push`, the
device's checks (attacks included), the retained answer and the fleet view.

One broker, one `edge-gateway serve` and one `edge-agent run` for the whole module (lean).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.canonical import canonical_json
from agent.contracts.config_command import ConfigCommand, ConfigStateMessage
from agent.contracts.ota import format_rfc3339
from agent.contracts.payloads import StatusMessage
from agent.gateway.cli_fleet import device_line
from agent.gateway.keys import KeyRole, load_key
from agent.trust.signing import sign
from tests.gateway.conftest import Site, cli, wait_for
from tests.helpers.broker import Mosquitto
from tests.helpers.daemon import DEMO_CLIP, DaemonProcess, demo_config
from tests.helpers.mqtt import Recorder, retained

DEV = "jet-cfg"


def cam(cam_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": cam_id, "source": {"type": "file", "path": str(DEMO_CLIP)}, "fps_cap": 3, **extra}


class Rig:
    def __init__(self, site: Site, daemon: DaemonProcess) -> None:
        self.site, self.daemon = site, daemon
        self.port = site.broker.port
        self.key = load_key(site.tmp / "keys", KeyRole.GATEWAY)
        self.n = 0

    def state(self) -> ConfigStateMessage | None:
        raw = retained(self.port, f"edge/{DEV}/config/state")
        return None if raw is None else ConfigStateMessage.model_validate_json(raw)

    def status(self) -> StatusMessage:
        raw = retained(self.port, f"edge/{DEV}/status")
        assert raw is not None
        return StatusMessage.model_validate_json(raw)

    def push_file(self, cameras: list[Any], *, check: bool = True) -> Any:
        self.n += 1
        path = self.site.tmp / f"cameras-{self.n}.yaml"
        path.write_text(yaml.safe_dump({"cameras": cameras}))
        return cli(self.site.config, "config", "push", DEV, str(path), check=check, timeout=90)

    def command(self, sequence: int, key: Ed25519PrivateKey | None = None, **kw: Any) -> dict:
        now = time.time()
        self.n += 1
        cmd = ConfigCommand(
            command_id=kw.pop("command_id", f"t-{sequence}-{self.n}"),
            device=kw.pop("device", DEV),
            sequence=sequence,
            issued=format_rfc3339(now),
            expires=format_rfc3339(kw.pop("expires", now + 600)),
            cameras=kw.pop("cameras", [cam("cam-a")]),
        )
        return sign(cmd, key or self.key).model_dump(mode="json", by_alias=True)

    def send(self, wire: dict[str, Any]) -> ConfigStateMessage:
        """Publish a command as an attacker on the broker would; the device's answer to it."""
        topic = f"edge/{DEV}/config/command"
        paho.mqtt.publish.single(topic, canonical_json(wire), qos=1, port=self.port)
        return wait_for(
            lambda: (s := self.state()) is not None and s.command_id == wire["command_id"] and s,
            30,
            what=f"answer to {wire['command_id']}",
        )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, site_template: Path) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("config-push")
    with Mosquitto(tmp / "broker") as broker:
        site = Site(tmp, broker, site_template)
        site.gateway.start()
        keys = json.loads(site.keys_file.read_text())
        cfg = demo_config(tmp / "state", broker.port, DEV, trust=keys)
        cfg["cameras"] = [cam("cam-a")]
        daemon = DaemonProcess(tmp / "d", cfg).start()
        try:
            site.gateway.enroll([DEV])
            wait_for(lambda: retained(broker.port, f"edge/{DEV}/status"), 60, what="online")
            yield Rig(site, daemon)
        finally:
            daemon.kill()
            site.gateway.kill(signal.SIGTERM)


def test_push_applies_and_the_fleet_view_shows_it(rig: Rig) -> None:
    """A pushed camera set is applied live, answered `applied` with the status sha256, kept
    under the state dir and shown by `edge-gateway devices`."""
    rec = Recorder(rig.port, [f"edge/{DEV}/cameras/cam-b/detections"])
    out = rig.push_file([cam("cam-a"), cam("cam-b")])
    assert f"{DEV} applied it" in out.stdout, out.stdout
    rec.wait_for(lambda ms: len(ms) >= 2, timeout=60)
    rec.close()
    state = rig.state()
    assert state is not None and state.state == "applied"
    st = wait_for(lambda: (s := rig.status()).config_sha256 == state.config_sha256 and s, 10)
    assert [c.id for c in st.cameras] == ["cam-a", "cam-b"]
    overlay = json.loads(
        (rig.daemon.config_path.parent.parent / "state/config/cameras.json").read_text()
    )
    assert [c["id"] for c in overlay["cameras"]] == ["cam-a", "cam-b"]
    views = json.loads(cli(rig.site.config, "devices", "--json").stdout)
    view = next(v for v in views if v["device"] == DEV)
    assert view["config_sha256"] == state.config_sha256
    assert view["config_push"]["result"] == "applied"
    assert f"cfg {state.config_sha256[:12]} push applied" in device_line(view, time.time())


def test_bad_push_is_rejected_and_changes_nothing(rig: Rig) -> None:
    """A camera the device cannot validate is rejected with its field path; cameras stay."""
    before = rig.status()
    out = rig.push_file([cam("cam-a", fps_capp=2)], check=False)
    assert out.returncode == 1
    assert "invalid_config" in out.stderr and "cameras.0.fps_capp" in out.stderr, out.stderr
    assert rig.status().cameras == before.cameras
    assert rig.status().config_sha256 == before.config_sha256


def test_gateway_refuses_to_push_a_secret(rig: Rig) -> None:
    """A literal RTSP password never leaves the gateway."""
    bad = {"id": "cam-x", "source": {"type": "rtsp", "url": "rtsp://admin:hunter2@10.0.0.9/s"}}
    resp = rig.site.gateway.post(f"/v1/devices/{DEV}/config", {"cameras": [bad]})
    assert resp.status_code == 400 and "literal password" in resp.text, resp.text


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("forged", "unknown_key"),  # signed by a key the device does not trust
        ("tampered", "bad_signature"),  # cameras edited after signing
        ("expired", "expired_command"),  # past its expiry
        ("old_sequence", "old_sequence"),  # a fresh id with a used sequence number
        ("other_device", "wrong_device"),  # a valid command for another device
        ("unsigned", "unsigned"),
    ],
)
def test_attacks_are_refused_and_change_nothing(rig: Rig, attack: str, reason: str) -> None:
    """Forged, tampered, expired, replayed-sequence and misaddressed pushes are refused."""
    before = rig.status().config_sha256
    state = rig.state()
    last = 0 if state is None or state.last_sequence is None else state.last_sequence
    evil = [cam("cam-evil")]
    if attack == "forged":
        wire = rig.command(last + 100, key=Ed25519PrivateKey.generate(), cameras=evil)
    elif attack == "tampered":
        wire = {**rig.command(last + 100), "cameras": evil}
    elif attack == "expired":
        wire = rig.command(last + 100, expires=time.time() - 1, cameras=evil)
    elif attack == "old_sequence":
        if last == 0:  # run alone: make one sequence number used first
            last = rig.send(rig.command(1)).last_sequence or 0
        wire = rig.command(last, cameras=evil)
    elif attack == "other_device":
        wire = rig.command(last + 100, device="jet-other", cameras=evil)
    else:
        wire = {k: v for k, v in rig.command(last + 100, cameras=evil).items() if k != "signature"}
    answer = rig.send(wire)
    assert (answer.state, answer.reason) == ("rejected", reason), answer.detail
    assert rig.status().config_sha256 == before
    assert "cam-evil" not in {c.id for c in rig.status().cameras}


def test_replayed_push_is_refused(rig: Rig) -> None:
    """An older, validly signed push sent again after a newer one is refused as a replay."""
    state = rig.state()
    last = 0 if state is None or state.last_sequence is None else state.last_sequence
    first = rig.command(last + 1, cameras=[cam("cam-a"), cam("cam-c")])
    assert rig.send(first).state == "applied"
    second = rig.command(last + 2, cameras=[cam("cam-a")])
    assert rig.send(second).state == "applied"
    again = rig.send({**first})
    assert (again.state, again.reason) == ("rejected", "replayed"), again.detail
    assert [c.id for c in rig.status().cameras] == ["cam-a"]
