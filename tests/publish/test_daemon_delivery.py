"""The real daemon process, a real broker and its real outbox file: forged acks from an
anonymous client delete nothing, a signed ack deletes its stream, a corrupt outbox is moved
aside, gateway acks without a key are refused at start.

Self-contained (no publish test helpers) so the same file runs against older code.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.ack import AckEntry, AckMessage
from agent.contracts.payloads import HealthMessage, StatusMessage
from agent.trust.signing import key_id, public_key_b64, sign
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.daemon import DaemonProcess, demo_config
from tests.helpers.mqtt import Recorder, retained

DEV = "dev-test"
CAM = "cam-a"
DETECTIONS = f"edge/{DEV}/cameras/{CAM}/detections"
HEALTH = f"edge/{DEV}/health"
ACK = f"edge/{DEV}/ack"
GATEWAY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ROGUE = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)


def _ack(boot: str, upto: int, key: Ed25519PrivateKey | None) -> dict[str, Any]:
    msg = AckMessage(
        device=DEV,
        issued="2026-11-29T10:00:00.000Z",
        acks=[AckEntry(boot_id=boot, camera=CAM, stream="detections", seq_upto=upto)],
    )
    return (msg if key is None else sign(msg, key)).model_dump(mode="json", by_alias=True)


def forged_acks(boot: str, upto: int) -> list[bytes]:
    """What an anonymous client on the LAN can send once it knows the boot id."""
    old = {"schema": "edge.ack/1", "device": DEV, "acks": [
        {"boot_id": boot, "camera": CAM, "seq_upto": upto}]}  # fmt: skip
    bad = _ack(boot, upto, ROGUE)
    bad["key_id"] = key_id(GATEWAY)  # a rogue signature under the trusted key's id
    return [json.dumps(m).encode() for m in (old, _ack(boot, upto, None), bad)]


def anonymous_publish(port: int, topic: str, payload: bytes) -> None:
    """Publish at QoS 1 as an anonymous client and wait for the broker's PUBACK."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def rows_upto(outbox: Path, boot: str, upto: int) -> int:
    """Rows of `boot` with seq <= upto in the daemon's outbox file (read beside it, WAL)."""
    db = sqlite3.connect(outbox, timeout=5)
    try:
        q = "SELECT count(*) FROM outbox WHERE boot_id = ? AND seq <= ?"
        return int(db.execute(q, (boot, upto)).fetchone()[0])
    finally:
        db.close()


def health_after(rec: Recorder, n_before: int, count: int) -> list[HealthMessage]:
    """Wait for `count` more health messages than `n_before` (a sync point, not a timer)."""
    rec.wait_for(lambda ms: sum(m.topic == HEALTH for m in ms) >= n_before + count, timeout=20)
    return [HealthMessage.model_validate_json(m.payload) for m in rec.on(HEALTH)]


def gateway_ack_config(state: Path, port: int) -> dict[str, Any]:
    return demo_config(
        state,
        port,
        outbox={"require_gateway_ack": True, "gateway_ack_timeout_s": 600},
        trust={"gateway_keys": {key_id(GATEWAY): public_key_b64(GATEWAY)}},
    )


def test_forged_acks_delete_nothing_from_a_running_daemon(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """An anonymous client reads boot_id from the retained status and publishes forged acks
    (edge.ack/1, unsigned and rogue-signed edge.ack/2): every outbox row stays; a signed ack
    then deletes them."""
    state = tmp_path / "state"
    rec = Recorder(mosquitto.port, [f"edge/{DEV}/#"])
    try:
        with DaemonProcess(tmp_path / "d", gateway_ack_config(state, mosquitto.port)):
            rec.wait_for(lambda ms: sum(m.topic == DETECTIONS for m in ms) >= 10, timeout=60)
            status = StatusMessage.model_validate_json(
                retained(mosquitto.port, f"edge/{DEV}/status")
            )
            boot = status.boot_id
            assert boot is not None
            upto = max(json.loads(m.payload)["seq"] for m in rec.on(DETECTIONS))
            health_after(rec, len(rec.on(HEALTH)), 1)  # the PUBACKs of those rows are in
            for data in forged_acks(boot, 10**9):
                anonymous_publish(mosquitto.port, ACK, data)
            health = health_after(rec, len(rec.on(HEALTH)), 2)
            kept = rows_upto(state / "outbox.sqlite3", boot, upto)
            assert kept == upto + 1, f"forged acks deleted {upto + 1 - kept} of {upto + 1} rows"
            assert health[-1].acks_refused == 3
            anonymous_publish(mosquitto.port, ACK, json.dumps(_ack(boot, upto, GATEWAY)).encode())
            health_after(rec, len(rec.on(HEALTH)), 1)
            assert rows_upto(state / "outbox.sqlite3", boot, upto) == 0
    finally:
        rec.close()


def test_random_bytes_as_outbox_are_moved_aside_and_the_daemon_runs(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A daemon whose outbox file is random bytes moves it aside, publishes, and reports the
    loss in status and health."""
    state = tmp_path / "state"
    state.mkdir()
    junk = os.urandom(64 * 1024)
    (state / "outbox.sqlite3").write_bytes(junk)
    rec = Recorder(mosquitto.port, [f"edge/{DEV}/#"])
    try:
        with DaemonProcess(tmp_path / "d", demo_config(state, mosquitto.port)) as d:
            try:
                rec.wait_for(lambda ms: sum(m.topic == DETECTIONS for m in ms) >= 3, timeout=60)
            finally:
                print(d.log()[-3000:])
            health = health_after(rec, len(rec.on(HEALTH)), 1)
            status = StatusMessage.model_validate_json(
                retained(mosquitto.port, f"edge/{DEV}/status")
            )
    finally:
        rec.close()
    aside = list(state.glob("outbox.sqlite3.corrupt-*"))
    assert [p.read_bytes() == junk for p in aside] == [True]
    assert status.outbox_quarantined == 1 and health[-1].outbox_quarantined == 1
    assert "outbox.corrupt_moved_aside" in d.log()


def test_gateway_acks_without_a_gateway_key_refuse_to_start(tmp_path: Path) -> None:
    """require_gateway_ack with no gateway key: exit 1 with an error naming both settings."""
    cfg = demo_config(tmp_path / "state", free_port(), outbox={"require_gateway_ack": True})
    d = DaemonProcess(tmp_path / "d", cfg).start()
    try:
        code = d.wait(30)
    finally:
        d.kill()
    assert code == 1, d.log()[-2000:]
    assert "require_gateway_ack" in d.log() and "trust.gateway_keys" in d.log()
