"""Only enrolled devices exist: the device list, what happens to messages from other ids, and
OTA states for commands the gateway never sent."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from agent.contracts.ota import ModelId, OtaState, OtaStateMessage, state_bytes
from agent.contracts.payloads import CameraStatus, ModelRef, StatusMessage, dump_payload, rfc3339_ms
from agent.gateway.db import MIGRATIONS, Store
from agent.gateway.devices import EnrolmentError
from agent.gateway.fleet import Fleet
from agent.gateway.keys import KeyRole, init_keys, load_key
from tests.gateway.conftest import Site, cli, sha256_hex, wait_for
from tests.gateway.sim_device import device_token

SHA = "a" * 64


def status(device: str, online: bool = True) -> bytes:
    return dump_payload(
        StatusMessage(
            device=device,
            state="online" if online else "offline",
            ts=rfc3339_ms(time.time()),
            boot_id=str(uuid.uuid4()),
            agent_version="test",
            model=ModelRef(name="m", version=1, sha256=SHA),
            cameras=[CameraStatus(id="cam", state="streaming", fps=10.0)],
        )
    )


def ota_state(device: str, command_id: str | None, state: OtaState) -> bytes:
    return state_bytes(
        OtaStateMessage(
            device=device,
            state=state,
            command_id=command_id,
            active_model=ModelId(name="m", version=1, sha256=SHA),
            ts=rfc3339_ms(time.time()),
        )
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    init_keys(tmp_path / "keys")
    with Store(tmp_path / "gw.sqlite3") as store:
        yield Fleet(
            store,
            load_key(tmp_path / "keys", KeyRole.GATEWAY),
            lambda t, p: None,
            public_url="http://127.0.0.1:8080",
        )


def test_status_from_an_unenrolled_device_is_counted_and_ignored(fleet: Fleet) -> None:
    """A valid status from an id that is not enrolled creates no device and is counted."""
    fleet.on_message("edge/evil/status", status("evil"), retained=True)
    assert fleet.devices.all() == [] and fleet.devices.get("evil") is None
    assert fleet.stats.unknown_device_messages == 1
    assert list(fleet.stats.recent_unknown_devices) == ["evil"]


def test_enrolled_device_status_is_recorded(fleet: Fleet) -> None:
    """After enrolment the same status makes the device online with its model."""
    fleet.enroll("cam-1", None)
    fleet.on_message("edge/cam-1/status", status("cam-1"))
    row = fleet.devices.get("cam-1")
    assert row is not None and row.online and row.status is not None
    assert fleet.stats.unknown_device_messages == 0


def test_ota_state_for_a_command_never_sent_is_noise(fleet: Fleet) -> None:
    """An OTA state naming a command id no rollout sent is counted and not shown as progress."""
    fleet.enroll("cam-1", None)
    fleet.on_message("edge/cam-1/ota/state", ota_state("cam-1", None, OtaState.IDLE))
    fleet.on_message(
        "edge/cam-1/ota/state", ota_state("cam-1", "forged-command", OtaState.DOWNLOADING)
    )
    row = fleet.devices.get("cam-1")
    assert row is not None and row.ota is not None
    assert row.ota["state"] == "idle" and row.ota["command_id"] is None
    assert fleet.stats.unknown_command_states == 1


def test_removed_device_is_forgotten_and_ignored(fleet: Fleet) -> None:
    """`remove` drops the device and its reports; its next status is counted as unknown."""
    fleet.enroll("cam-1", None)
    fleet.on_message("edge/cam-1/status", status("cam-1"))
    fleet.remove("cam-1")
    fleet.on_message("edge/cam-1/status", status("cam-1"))
    assert fleet.devices.all() == [] and fleet.stats.unknown_device_messages == 1


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        (("cam-1", None), ("cam-1", None), "already_enrolled"),
        (("cam-1", sha256_hex("t")), ("cam-2", sha256_hex("t")), "token_in_use"),
    ],
)
def test_enrolment_refusals(fleet: Fleet, first: tuple, second: tuple, reason: str) -> None:
    """The same id twice, or one token for two devices, is refused with its reason."""
    fleet.enroll(*first)
    with pytest.raises(EnrolmentError) as err:
        fleet.enroll(*second)
    assert err.value.reason == reason


def test_upgrade_enrols_the_devices_that_had_reported(tmp_path: Path) -> None:
    """Opening a schema-1 state file enrols devices that had a status; others are dropped."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO devices(id, last_seen, status) VALUES ('jet-0', 1.0, '{}')")
    db.execute("INSERT INTO devices(id, last_seen, malformed) VALUES ('junk', 1.0, 3)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    init_keys(tmp_path / "keys")
    with Store(path) as store:
        fleet = Fleet(
            store,
            load_key(tmp_path / "keys", KeyRole.GATEWAY),
            lambda t, p: None,
            public_url="http://127.0.0.1:8080",
        )
        assert [d.id for d in fleet.devices.all()] == ["jet-0"]


@pytest.mark.slow
def test_anonymous_retained_status_does_not_make_a_device_appear(site: Site) -> None:
    """Attack: an anonymous client publishes a retained `edge/evil/status` online; the fleet
    view (API and CLI) never lists `evil`, and the message is counted."""
    site.sims.start(["sim-a"], site.model_arg(1))
    site.gateway.start()
    site.wait_devices(["sim-a"])
    mqtt_publish.single(
        "edge/evil/status",
        status("evil"),
        qos=1,
        retain=True,
        hostname="127.0.0.1",
        port=site.broker.port,
    )
    wait_for(
        lambda: site.gateway.get("/v1/health")["unknown_device_messages"] >= 1,
        what="the evil status counted",
    )
    assert [d["device"] for d in site.gateway.get("/v1/devices")] == ["sim-a"]
    listing = cli(site.config, "devices").stdout.splitlines()
    assert not [line for line in listing if line.startswith("evil")]
    ignored = [line for line in listing if line.startswith("ignored ")]
    assert len(ignored) == 1 and "not enrolled (recent: " in ignored[0] and "evil" in ignored[0]


@pytest.mark.slow
def test_cli_enrol_after_the_device_came_online_then_remove(site: Site) -> None:
    """`devices enroll` of a device already online shows it at once (its retained status is
    read again); `devices remove` takes it off the list."""
    site.sims.start(["sim-a"], site.model_arg(1))
    site.gateway.start()
    out = cli(
        site.config,
        "devices",
        "enroll",
        "sim-a",
        "--token-sha256",
        sha256_hex(device_token("sim-a")),
    ).stdout
    assert "enrolled sim-a" in out and "device token" not in out
    wait_for(
        lambda: [d["model"] for d in site.gateway.get("/v1/devices")] == ["demo-yolov8n@1"],
        what="sim-a listed with its model",
    )
    fresh = cli(site.config, "devices", "enroll", "sim-b").stdout
    assert "device token (shown once; give it to the device): " in fresh
    cli(site.config, "devices", "remove", "sim-a")
    views = json.loads(cli(site.config, "devices", "--json").stdout)
    assert [v["device"] for v in views] == ["sim-b"] and views[0]["last_seen"] is None
