"""The Publisher against a real Mosquitto: status, will, order, queue bound, retained, acks."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from agent.contracts.payloads import DetectionMessage, StatusMessage
from agent.contracts.streams import Stream
from agent.contracts.topics import Topics
from agent.publish.config import MqttConfig, OutboxConfig, TlsConfig
from agent.publish.publisher import Publisher, PublisherConfigError, build_tls_context
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.messages import detection_payload
from tests.helpers.mqtt import Recorder, retained
from tests.publish.support import (
    BOOT,
    DEVICE,
    GATEWAY_KEYS,
    Collector,
    ack_bytes,
    mqtt_cfg,
    outbox_cfg,
    payload,
    retained_status,
    status,
    wait_for,
)


def make(
    tmp_path: Path, port: int, outbox: OutboxConfig | None = None, **mqtt_kw: Any
) -> Publisher:
    return Publisher(
        mqtt_cfg(port, **mqtt_kw),
        outbox or outbox_cfg(tmp_path),
        Topics(DEVICE),
        tmp_path,
        BOOT,
        GATEWAY_KEYS,
    )


def send(client_port: int, topic: str, data: bytes, retain: bool = False) -> None:
    """Publish one QoS 1 message with a throwaway client and wait for its PUBACK."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", client_port)
    c.loop_start()
    c.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


@pytest.mark.parametrize(
    ("protocol", "enabled"),
    [
        ("v5", True),  # the default: MQTT 5 with the on-disk outbox
        ("v311", True),  # MQTT 3.1.1 selectable
        ("v5", False),  # outbox disabled: published straight from the hand-off queue
    ],
)
def test_detections_arrive_complete_and_in_order(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str, enabled: bool
) -> None:
    """Every submitted detection reaches a subscriber once, in submission order."""
    with Collector(mosquitto.port) as col:
        pub = make(
            tmp_path, mosquitto.port, outbox_cfg(tmp_path, enabled=enabled), protocol=protocol
        )
        pub.start()
        try:
            for seq in range(500):
                while not pub.submit_detection("cam1", seq, payload("cam1", seq)):
                    time.sleep(0.001)
            wait_for(lambda: len(col.seqs("cam1")) >= 500, 20, "500 detections")
            assert col.seqs("cam1") == list(range(500))
            wait_for(lambda: pub.stats().acked == 500, 5, "500 PUBACKs")
            assert pub.stats().outbox_depth == 0
        finally:
            pub.stop(2)


def test_online_status_is_retained_with_boot_id(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """After connecting, the retained status is 'online' and names the boot."""
    pub = make(tmp_path, mosquitto.port)
    pub.start()
    try:
        wait_for(lambda: pub.stats().connected, 10, "connected")
        assert retained_status(mosquitto.port) == "online"
    finally:
        pub.stop(2)


def test_stop_publishes_retained_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """An orderly stop leaves a retained 'offline' status (not via the will)."""
    pub = make(tmp_path, mosquitto.port)
    pub.start()
    wait_for(lambda: pub.stats().connected, 10, "connected")
    pub.stop(2)
    assert retained_status(mosquitto.port) == "offline"


def test_unreachable_broker_does_not_block_and_delivers_later(tmp_path: Path) -> None:
    """start() returns with no broker; once one appears, the backlog is delivered."""
    port = free_port()
    pub = make(tmp_path, port)
    pub.start()
    try:
        for seq in range(50):
            assert pub.submit_detection("cam1", seq, payload("cam1", seq))
        wait_for(lambda: pub.stats().outbox_depth == 50, 5, "50 committed while offline")
        assert not pub.stats().connected
        with Mosquitto(tmp_path / "broker", port=port) as broker, Collector(broker.port) as col:
            wait_for(lambda: len(col.seqs("cam1")) == 50, 20, "backlog delivered")
            assert col.seqs("cam1") == list(range(50))
    finally:
        pub.stop(1)


def test_full_hand_off_queue_refuses_and_counts(tmp_path: Path) -> None:
    """With no broker and no outbox, the bounded queue fills; refusals are counted."""
    pub = make(
        tmp_path, free_port(), outbox_cfg(tmp_path, enabled=False, inflight=5), queue_size=10
    )
    pub.start()
    try:
        results = [pub.submit_detection("cam1", i, payload("cam1", i)) for i in range(100)]
        accepted = results.count(True)
        assert accepted <= 15  # 10 in the queue + a window of 5 in memory
        assert pub.stats().queue_dropped == 100 - accepted
    finally:
        pub.stop(0.5)
    # Without an outbox, what never reached the broker is lost at stop, and counted.
    assert pub.stats().outbox_dropped == accepted


def test_retained_and_subscriptions_come_back_after_broker_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A broker restart without persistence: OTA state re-retained, commands still received."""
    topics = Topics(DEVICE)
    got: list[bytes] = []
    pub = make(tmp_path, mosquitto.port)
    pub.subscribe(topics.ota_command, lambda t, p: got.append(p))
    pub.start()
    try:
        wait_for(lambda: pub.stats().connected, 10, "connected")
        pub.publish_retained(topics.ota_state, b'{"state":"idle"}')
        mosquitto.restart(signal.SIGKILL)  # no persistence: retained messages are gone
        wait_for(lambda: pub.stats().connects >= 2, 15, "reconnected")
        send(mosquitto.port, topics.ota_command, b"cmd-1")
        wait_for(lambda: got == [b"cmd-1"], 5, "command after reconnect")
        assert retained_status(mosquitto.port) == "online"
        states: list[bytes] = []
        ev = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, *a: cl.subscribe(topics.ota_state, 1)
        c.on_message = lambda cl, ud, m: (states.append(m.payload), ev.set())
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        ev.wait(5)
        c.disconnect()
        c.loop_stop()
        assert states == [b'{"state":"idle"}']
    finally:
        pub.stop(2)


def test_gateway_ack_mode_keeps_rows_until_acked(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """With require_gateway_ack, PUBACKed rows stay until a matching ack deletes them."""
    ocfg = outbox_cfg(tmp_path, require_gateway_ack=True, gateway_ack_timeout_s=60)
    with Collector(mosquitto.port) as col:
        pub = make(tmp_path, mosquitto.port, ocfg)
        pub.start()
        try:
            for seq in range(20):
                pub.submit_detection("cam1", seq, payload("cam1", seq))
            wait_for(lambda: len(col.seqs("cam1")) == 20, 10, "delivered")
            assert pub.stats().outbox_depth == 20
            bad = [
                b"not json",  # garbage is ignored
                ack_bytes("other", [(BOOT, "cam1", 99)]),  # an ack for another device is ignored
            ]
            good = ack_bytes(DEVICE, [(BOOT, "cam1", 9)])
            for data in [*bad, good]:
                send(mosquitto.port, Topics(DEVICE).ack, data)
            wait_for(lambda: pub.stats().outbox_depth == 10, 5, "rows 0..9 deleted")
            assert pub.stats().acked == 10
        finally:
            pub.stop(1)


def test_gateway_ack_timeout_is_per_row_not_reset_by_other_streams(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """cam1 gets no ack (the gateway lacks one of its rows) while cam2 is acked every 0.2 s:
    cam1's rows are still replayed after gateway_ack_timeout_s, so the gateway can fill its
    hole. (Timing acks per ack message would postpone that replay forever.)"""
    ocfg = outbox_cfg(tmp_path, require_gateway_ack=True, gateway_ack_timeout_s=1.5)
    with Collector(mosquitto.port) as col:
        pub = make(tmp_path, mosquitto.port, ocfg)
        pub.start()
        try:
            for seq in range(5):
                pub.submit_detection("cam1", seq, payload("cam1", seq))
            wait_for(lambda: len(col.seqs("cam1")) == 5, 10, "cam1 delivered once")
            deadline = time.monotonic() + 4.0
            seq = 0
            while time.monotonic() < deadline:
                pub.submit_detection("cam2", seq, payload("cam2", seq))
                ack = ack_bytes(DEVICE, [(BOOT, "cam2", seq)])
                time.sleep(0.2)
                send(mosquitto.port, Topics(DEVICE).ack, ack)
                seq += 1
            assert len(col.seqs("cam1")) >= 10, "cam1 was not replayed while cam2 was acked"
        finally:
            pub.stop(1)


def test_health_is_qos0_and_not_retained(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Health messages are delivered live at QoS 0 and never retained."""
    seen: list[tuple[int, bool]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, ud, m: seen.append((m.qos, m.retain))
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe(Topics(DEVICE).health, 1)
    c.loop_start()
    pub = make(tmp_path, mosquitto.port)
    pub.start()
    try:
        wait_for(lambda: pub.stats().connected, 10, "connected")
        time.sleep(0.2)  # let the subscription settle before the message
        pub.publish_health(b'{"fps": 1}')
        wait_for(lambda: len(seen) == 1, 5, "health message")
        assert seen == [(0, False)]
    finally:
        pub.stop(1)
        c.disconnect()
        c.loop_stop()
    fresh: list[bytes] = []
    c2 = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c2.on_message = lambda cl, ud, m: fresh.append(m.payload)
    c2.connect("127.0.0.1", mosquitto.port)
    c2.subscribe([(Topics(DEVICE).health, 1), (Topics(DEVICE).status, 1)])
    c2.loop_start()
    wait_for(lambda: len(fresh) >= 1, 5, "retained status as a marker")
    time.sleep(0.2)
    c2.disconnect()
    c2.loop_stop()
    assert all(json.loads(p).get("fps") is None for p in fresh), "health was retained"


def test_password_is_never_logged(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker password from the environment appears in no log event."""
    secret = "s3cr3t-Pa55word"
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", secret)
    with structlog.testing.capture_logs() as events:
        pub = make(
            tmp_path, mosquitto.port, username="dev-a", password_env="EDGE_TEST_MQTT_PASSWORD"
        )
        pub.start()
        wait_for(lambda: pub.stats().connected, 10, "connected")
        pub.stop(1)
    assert events, "nothing was logged at all"
    assert secret not in repr(events)


def test_missing_password_variable_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password_env naming an unset variable fails at construction, naming it."""
    monkeypatch.delenv("EDGE_TEST_UNSET", raising=False)
    with pytest.raises(PublisherConfigError, match="EDGE_TEST_UNSET"):
        make(tmp_path, 1883, username="x", password_env="EDGE_TEST_UNSET")


def test_half_configured_tls_is_refused() -> None:
    """A client certificate without its key is a config error."""
    with pytest.raises(ValidationError, match="half-configured"):
        MqttConfig(tls={"ca_file": "/ca.crt", "cert_file": "/c.crt"})


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"ca_file": "missing-ca.crt"}, "ca_file: .*does not exist"),  # no CA file
        ({"ca_file": "garbage.pem"}, "ca_file: .*not a PEM CA"),  # a CA file that is not PEM
        (
            {"ca_file": "ca.crt", "cert_file": "missing.crt", "key_file": "k.key"},
            "cert_file: .*does not exist",
        ),  # client cert file missing
        (
            {"ca_file": "ca.crt", "cert_file": "garbage.pem", "key_file": "garbage.pem"},
            "cannot load cert_file",
        ),  # client cert and key that do not load
    ],
)
def test_bad_tls_files_are_clear_errors(tmp_path: Path, files: dict[str, str], match: str) -> None:
    """TLS files that are missing or invalid fail at start with the field named."""
    from tests.publish.shipped import make_certs

    make_certs(tmp_path, ["ca"])
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    (tmp_path / "k.key").write_text("x")
    tls = TlsConfig(**{k: tmp_path / v for k, v in files.items()})
    with pytest.raises(PublisherConfigError, match=match):
        build_tls_context(tls)


def _sent(pub: Publisher, n: int) -> bool:
    """All `n` messages published and PUBACKed (waiting for a gateway ack)."""
    st = pub.stats()
    return st.published >= n and st.inflight == 0


def test_signed_ack_deletes_exactly_its_streams_rows(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A signed detections ack deletes the camera's detections rows, never its florence2 rows;
    a florence2 ack then deletes those up to its seq."""
    pub = make(tmp_path, mosquitto.port, outbox_cfg(tmp_path, require_gateway_ack=True))
    pub.start()
    try:
        for seq in range(10):
            pub.submit_detection("cam1", seq, payload("cam1", seq))
        for seq in range(5):
            pub.submit(Stream.FLORENCE2, "cam1", seq, payload("cam1", seq))
        wait_for(lambda: _sent(pub, 15), 10, "15 messages PUBACKed")
        send(mosquitto.port, Topics(DEVICE).ack, ack_bytes(DEVICE, [(BOOT, "cam1", 10**6)]))
        wait_for(lambda: pub.stats().outbox_depth == 5, 5, "detections rows deleted")
        send(
            mosquitto.port,
            Topics(DEVICE).ack,
            ack_bytes(DEVICE, [(BOOT, "cam1", 2)], stream="florence2"),
        )
        wait_for(lambda: pub.stats().outbox_depth == 2, 5, "florence2 rows 0..2 deleted")
    finally:
        pub.stop(1)
    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    left = db.execute("SELECT stream, seq FROM outbox ORDER BY id").fetchall()
    db.close()
    assert left == [("florence2", 3), ("florence2", 4)]


def test_refused_acks_delete_nothing_and_are_counted(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Old-format, unsigned and rogue-signed acks delete no row; each one is counted."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    rogue = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    old = {
        "schema": "edge.ack/1",
        "device": DEVICE,
        "acks": [{"boot_id": BOOT, "camera": "cam1", "seq_upto": 10**6}],
    }
    forged = [
        json.dumps(old).encode(),
        ack_bytes(DEVICE, [(BOOT, "cam1", 10**6)], key=None),
        ack_bytes(DEVICE, [(BOOT, "cam1", 10**6)], key=rogue),
    ]
    pub = make(tmp_path, mosquitto.port, outbox_cfg(tmp_path, require_gateway_ack=True))
    pub.start()
    try:
        for seq in range(10):
            pub.submit_detection("cam1", seq, payload("cam1", seq))
        wait_for(lambda: _sent(pub, 10), 10, "10 messages PUBACKed")
        for data in forged:
            send(mosquitto.port, Topics(DEVICE).ack, data)
        wait_for(lambda: pub.stats().acks_refused == 3, 5, "3 refused acks counted")
        assert pub.stats().outbox_depth == 10
        assert pub.stats().acked == 0
    finally:
        pub.stop(1)


def test_gateway_ack_mode_without_a_gateway_key_is_refused(tmp_path: Path) -> None:
    """require_gateway_ack with no key to verify acks fails at construction, naming both."""
    with pytest.raises(PublisherConfigError, match="require_gateway_ack.*gateway_keys"):
        Publisher(
            mqtt_cfg(1883),
            outbox_cfg(tmp_path, require_gateway_ack=True),
            Topics(DEVICE),
            tmp_path,
            BOOT,
        )


def test_replays_carry_a_fresh_oldest_unacked_seq(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """First deliveries declare the oldest held seq (0); after an ack up to 4, the replay of
    the rest declares 5, the lowest seq the device still holds."""
    topic = Topics(DEVICE).detections("cam-a")
    rec = Recorder(mosquitto.port, [topic])
    ocfg = outbox_cfg(tmp_path, require_gateway_ack=True, gateway_ack_timeout_s=1.0)
    pub = make(tmp_path, mosquitto.port, ocfg)
    pub.start()

    def marks(seq: int) -> list[int | None]:
        msgs = [DetectionMessage.model_validate_json(m.payload) for m in rec.on(topic)]
        return [m.oldest_unacked_seq for m in msgs if m.seq == seq]

    try:
        for seq in range(10):
            pub.submit_detection("cam-a", seq, detection_payload(seq, DEVICE, boot_id=BOOT))
        wait_for(lambda: _sent(pub, 10), 10, "10 messages PUBACKed")
        send(mosquitto.port, Topics(DEVICE).ack, ack_bytes(DEVICE, [(BOOT, "cam-a", 4)]))
        wait_for(lambda: len(marks(9)) >= 2, 15, "a replay of seq 9")
    finally:
        pub.stop(1)
        rec.close()
    assert marks(0) == [0] and marks(9)[:2] == [0, 5]
    assert all(m == [0] or m[1:] and set(m[1:]) == {5} for m in map(marks, range(5, 10)))


def test_pushed_status_snapshot_is_what_is_retained(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """set_status publishes the daemon's snapshot retained, state online."""
    pub = make(tmp_path, mosquitto.port)
    pub.start()
    try:
        wait_for(lambda: pub.stats().connected, 10, "connected")
        snap = status().model_copy(update={"outbox_dropped": 7, "state": "offline"})
        pub.set_status(snap)
        wait_for(
            lambda: (
                json.loads(retained(mosquitto.port, Topics(DEVICE).status) or b"{}").get(
                    "outbox_dropped"
                )
                == 7
            ),
            5,
            "the pushed snapshot retained",
        )
        got = StatusMessage.model_validate_json(retained(mosquitto.port, Topics(DEVICE).status))
        assert got.state == "online" and got.boot_id == BOOT
    finally:
        pub.stop(1)


def test_reconnect_republishes_the_last_pushed_snapshot(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """After a broker restart the retained status is the snapshot pushed before it (the
    network thread never asks the daemon for one)."""
    pub = make(tmp_path, mosquitto.port)
    pub.set_status(status().model_copy(update={"outbox_dropped": 3}))
    pub.start()
    try:
        wait_for(lambda: pub.stats().connected, 10, "connected")
        mosquitto.restart(signal.SIGKILL)  # no persistence: the retained status is gone
        wait_for(lambda: pub.stats().connects >= 2, 15, "reconnected")
        wait_for(
            lambda: retained(mosquitto.port, Topics(DEVICE).status) is not None, 5, "re-retained"
        )
        got = StatusMessage.model_validate_json(retained(mosquitto.port, Topics(DEVICE).status))
        assert got.state == "online" and got.outbox_dropped == 3
    finally:
        pub.stop(1)
