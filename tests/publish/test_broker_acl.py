"""The shipped gateway broker config (configs/mosquitto/) with certificates from make-certs.sh.

One real Mosquitto per module runs the shipped mosquitto.conf and acl; clients authenticate with
certificates whose CN is their identity (dev-a, dev-b, gateway, operator).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.contracts.topics import Topics, discovery_topic
from agent.homeassistant.announcer import Announcer
from agent.homeassistant.discovery import CameraEntities, DeviceInfo, build
from agent.publish.config import MqttConfig, OutboxConfig, TlsConfig
from agent.publish.publisher import Publisher, build_tls_context
from agent.snapshots.config import SnapshotsConfig
from agent.snapshots.keeper import SnapshotKeeper
from agent.snapshots.writer import SnapshotWriter
from tests.publish.shipped import ShippedMosquitto, client_context, fleet_certs, make_certs
from tests.publish.support import BOOT, Collector, payload, wait_for

pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    certs: Path
    rogue: Path
    broker: ShippedMosquitto


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Certificates for the fleet and for a rogue CA, and the shipped broker running."""
    base = tmp_path_factory.mktemp("fleet")
    certs = fleet_certs(base / "certs")
    rogue = base / "rogue"
    make_certs(rogue, ["ca"], ["device", "dev-a"])
    with ShippedMosquitto(base / "broker", certs) as broker:
        yield Fleet(certs, rogue, broker)


class Client:
    """A connected MQTT v5 TLS client that records messages and PUBACK reason codes."""

    def __init__(self, fleet: Fleet, ctx: ssl.SSLContext, client_id: str = "") -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.tls_set_context(ctx)
        self.messages: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, Any] = {}
        self.result: str | None = None
        self.disconnect_reason: str | None = None
        self.done = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda cl, ud, m: self.messages.append((m.topic, m.payload))
        self.c.on_publish = lambda cl, ud, mid, rc, props: self.pubacks.__setitem__(mid, rc)
        self.c.on_subscribe = lambda cl, ud, mid, rcs, props: self._subacked.set()
        self._subacked = threading.Event()
        try:
            self.c.connect("localhost", fleet.broker.port, keepalive=10)
        except (OSError, ssl.SSLError) as err:
            self.result = f"refused: {err}"
            self.done.set()
            return
        self.c.loop_start()
        self.done.wait(10)

    def _on_connect(self, cl: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        self.result = "connected" if not rc.is_failure else f"refused: {rc}"
        self.done.set()

    def _on_disconnect(self, cl: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnect_reason = str(rc)
        if self.result is None:
            self.result = f"refused: {rc}"
        self.done.set()

    def publish(self, topic: str, data: bytes = b"x") -> Any:
        """Publish QoS 1 and return the broker's PUBACK reason code."""
        info = self.c.publish(topic, data, qos=1)
        wait_for(lambda: info.mid in self.pubacks, 5, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, *topics: str) -> None:
        self._subacked.clear()
        self.c.subscribe([(t, 1) for t in topics])
        assert self._subacked.wait(5), "no SUBACK"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def connect(fleet: Fleet, name: str, client_id: str = "") -> Client:
    client = Client(fleet, client_context(fleet.certs, name), client_id)
    assert client.result == "connected", f"{name}: {client.result}"
    return client


@pytest.mark.parametrize(
    ("who", "topic", "allowed"),
    [
        ("device-dev-a", "edge/dev-a/status", True),  # own retained status / will
        ("device-dev-a", "edge/dev-a/health", True),  # own health
        ("device-dev-a", "edge/dev-a/cameras/cam1/detections", True),  # own detections
        ("device-dev-a", "edge/dev-a/ota/state", True),  # own OTA state
        ("device-dev-a", "edge/dev-a/cameras/cam1/events", True),  # own tracked-object events
        ("device-dev-a", "edge/dev-a/cameras/cam1/zones/yard/person", True),  # own zone count
        ("device-dev-a", "edge/dev-a/cameras/cam1/lines/gate/car", True),  # own line count
        ("device-dev-a", "edge/dev-a/cameras/cam1/snapshot/person", True),  # own snapshot
        ("device-dev-a", "edge/dev-a/config/state", True),  # own config push result
        ("device-dev-a", "homeassistant/device/dev-a/config", True),  # own HA discovery
        ("device-dev-a", "homeassistant/device/dev-b/config", False),  # another's discovery
        ("device-dev-a", "edge/dev-b/cameras/cam1/events", False),  # another's events
        ("device-dev-a", "edge/dev-b/cameras/cam1/zones/yard/person", False),  # another's zones
        ("device-dev-a", "edge/dev-a/cameras/cam1/objects/person", True),  # own camera count
        ("device-dev-a", "edge/dev-b/cameras/cam1/lines/gate/car", False),  # another's lines
        ("device-dev-a", "edge/dev-b/cameras/cam1/snapshot/person", False),  # another's snapshot
        ("device-dev-a", "edge/dev-b/cameras/cam1/objects/person", False),  # another's count
        ("device-dev-a", "homeassistant/status", False),  # cannot fake Home Assistant's birth
        ("device-dev-a", "homeassistant/device/dev-a/other", False),  # only its config topic
        ("homeassistant", "homeassistant/status", True),  # Home Assistant's birth message
        ("homeassistant", "homeassistant/device/dev-a/config", False),  # not a device's config
        ("homeassistant", "edge/dev-a/status", False),  # nor anything under edge/
        ("device-dev-a", "edge/dev-a/config/command", False),  # a device cannot push config
        ("device-dev-a", "edge/dev-b/status", False),  # another device's status
        ("device-dev-a", "edge/dev-b/cameras/cam1/detections", False),  # another's detections
        ("device-dev-a", "edge/dev-a/ota/command", False),  # a device cannot command itself
        ("device-dev-a", "edge/dev-b/ota/command", False),  # ... nor another device
        ("device-dev-a", "edge/dev-a/ack", False),  # a device cannot forge its own acks
        ("device-dev-a", "edge/dev-a/other", False),  # nothing outside the listed topics
        ("gateway", "edge/dev-a/ota/command", True),  # only the gateway writes commands
        ("gateway", "edge/dev-a/ack", True),  # ... and acks
        ("gateway", "edge/dev-a/config/command", True),  # ... and config pushes
        ("gateway", "edge/dev-a/cameras/cam1/detections", False),  # it cannot forge detections
        ("gateway", "edge/gateway/status", False),  # nor pose as a device named "gateway"
        ("operator", "edge/dev-a/ota/command", False),  # operators are read-only
        ("operator", "edge/operator/status", False),  # ... even under their own name
    ],
)
def test_write_acl(fleet: Fleet, who: str, topic: str, allowed: bool) -> None:
    """The broker accepts or refuses (PUBACK 0x87) each publish as the ACL says."""
    observer = connect(fleet, "gateway")
    observer.subscribe("edge/#")
    if topic.startswith("homeassistant/"):
        observer.close()
        observer = connect(fleet, "operator")  # the gateway reads edge/# only
        observer.subscribe("homeassistant/#")
    # One session per identity (the CN is the client id): the gateway observes its own writes.
    client = observer if who == "gateway" else connect(fleet, who)
    try:
        marker = f"{who}->{topic}".encode()
        rc = client.publish(topic, marker)
        if allowed:
            assert not rc.is_failure, f"refused: {rc}"
            wait_for(lambda: (topic, marker) in observer.messages, 5, "observer sees it")
        else:
            assert rc.is_failure and rc.value == 0x87, f"expected 'not authorized', got {rc}"
    finally:
        client.close()
        observer.close()


@pytest.mark.parametrize(
    ("who", "foreign", "own"),
    [
        # device A subscribed under edge/dev-b/... gets nothing; its own command arrives
        (
            "device-dev-a",
            ["edge/dev-b/ota/command", "edge/dev-b/ack", "edge/#"],
            "edge/dev-a/ota/command",
        ),
        # an operator does not see commands or acks, but sees status
        ("operator", ["edge/dev-b/ota/command", "edge/dev-b/ack"], "edge/dev-b/status"),
    ],
)
def test_read_acl(fleet: Fleet, who: str, foreign: list[str], own: str) -> None:
    """Messages on topics a client may not read never reach it, those it may read do."""
    reader = connect(fleet, who)
    gateway = connect(fleet, "gateway")
    dev_b = connect(fleet, "device-dev-b")
    try:
        reader.subscribe(*foreign, own)
        for topic in ["edge/dev-b/ota/command", "edge/dev-b/ack"]:
            assert not gateway.publish(topic, b"secret").is_failure
        sender = dev_b if own.startswith("edge/dev-b/") else gateway
        assert not sender.publish(own, b"marker").is_failure
        # Same broker, in order: once the later marker arrived, the earlier ones would have too.
        wait_for(lambda: (own, b"marker") in reader.messages, 5, "the readable marker")
        assert [m for m in reader.messages if m[1] == b"secret"] == []
    finally:
        for c in (reader, gateway, dev_b):
            c.close()


@pytest.mark.parametrize(
    "case",
    [
        "no-client-cert",  # anonymous: no certificate at all
        "rogue-ca-cert",  # a certificate with the right CN from another CA
    ],
)
def test_unauthenticated_clients_are_refused(fleet: Fleet, case: str) -> None:
    """Clients without a certificate from the fleet CA never get a session."""
    if case == "no-client-cert":
        ctx = client_context(fleet.certs, None)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(fleet.certs / "ca.crt"))
        ctx.load_cert_chain(
            str(fleet.rogue / "device-dev-a.crt"), str(fleet.rogue / "device-dev-a.key")
        )
    client = Client(fleet, ctx)
    try:
        assert client.result is not None and client.result.startswith("refused"), client.result
    finally:
        client.close()


def test_device_refuses_a_broker_outside_its_pinned_ca(fleet: Fleet) -> None:
    """The agent's TLS context (pinned to another CA) rejects the gateway's certificate."""
    ctx = build_tls_context(TlsConfig(ca_file=fleet.rogue / "ca.crt"))
    client = Client(fleet, ctx)
    try:
        assert client.result is not None and "CERTIFICATE_VERIFY_FAILED" in client.result
    finally:
        client.close()


def test_client_ids_with_wildcards_are_replaced_by_the_certificate_cn(fleet: Fleet) -> None:
    """Client ids with '+', '#', '/' are never used: the CN is the id (a 2nd login takes over)."""
    first = connect(fleet, "device-dev-a", client_id="a/+#")
    second = connect(fleet, "device-dev-a", client_id="other:id")
    try:
        wait_for(lambda: first.disconnect_reason is not None, 5, "session takeover")
        log = fleet.broker.log.read_text()
        assert "Client dev-a already connected, closing old connection" in log
        assert "as a/+#" not in log and "as other:id" not in log
    finally:
        first.close()
        second.close()


def test_publisher_over_mutual_tls_delivers_and_counts_rejections(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The agent connects with its device certificate; publishes the ACL refuses are counted."""
    ca = fleet.certs / "ca.crt"
    gw_ctx = client_context(fleet.certs, "gateway")
    with Collector(fleet.broker.port, client_id="ignored", tls=gw_ctx) as col:
        pubs = []
        for device in ("dev-a", "dev-b"):  # both use dev-a's certificate: dev-b's topics are denied
            tls = TlsConfig(
                ca_file=ca,
                cert_file=fleet.certs / "device-dev-a.crt",
                key_file=fleet.certs / "device-dev-a.key",
            )
            pub = Publisher(
                MqttConfig(
                    host="localhost", port=fleet.broker.port, tls=tls, client_id=f"x-{device}"
                ),
                OutboxConfig(path=tmp_path / f"{device}.sqlite3"),
                Topics(device),
                tmp_path,
                BOOT,
            )
            pubs.append(pub)
        good, bad = pubs
        good.start()
        try:
            wait_for(lambda: good.stats().connected, 10, "dev-a connected")
            for seq in range(20):
                good.submit_detection("cam1", seq, payload("cam1", seq))
            wait_for(lambda: len(col.seqs("cam1")) == 20, 10, "dev-a detections at the gateway")
        finally:
            good.stop(2)
        bad.start()
        try:
            for seq in range(5):
                bad.submit_detection("cam1", seq, payload("cam1", seq))
            wait_for(lambda: bad.stats().rejected == 5, 10, "5 refused publishes counted")
            wait_for(lambda: bad.stats().outbox_depth == 0, 5, "refused rows removed")
        finally:
            bad.stop(2)


def test_discovery_and_snapshot_reach_home_assistant_through_mutual_tls(
    fleet: Fleet, tmp_path: Path
) -> None:
    """dev-a's publisher delivers its discovery and a snapshot JPEG, retained, through the
    shipped mTLS listener; Home Assistant's `online` birth makes it publish the discovery again."""
    topics = Topics("dev-a")
    tls = TlsConfig(
        ca_file=fleet.certs / "ca.crt",
        cert_file=fleet.certs / "device-dev-a.crt",
        key_file=fleet.certs / "device-dev-a.key",
    )
    pub = Publisher(
        MqttConfig(host="localhost", port=fleet.broker.port, tls=tls),
        OutboxConfig(path=tmp_path / "outbox.sqlite3"),
        topics,
        tmp_path,
        BOOT,
    )
    ha = connect(fleet, "homeassistant")
    ha.subscribe("homeassistant/device/+/config", "edge/+/cameras/+/snapshot/+")
    info = DeviceInfo("dev-a", "dev-a", "0.1.0", cameras=(CameraEntities("cam1", ("person",)),))
    config_topic = discovery_topic("homeassistant", "dev-a")
    announcer = Announcer(
        pub, config_topic, json.dumps(build(info, topics)).encode(), "homeassistant/status"
    )
    cfg = SnapshotsConfig()
    writer = SnapshotWriter(cfg, tmp_path, topics, pub.publish_retained)
    keeper = SnapshotKeeper(writer)
    image = np.random.default_rng(0).integers(0, 255, (576, 768, 3), dtype=np.uint8)
    pub.start()
    try:
        wait_for(lambda: pub.stats().connected, 10, "dev-a connected")
        announcer.start()
        keeper.offer("cam1", f"{BOOT}-cam1-1", "person", image, (100, 100, 220, 400), 0.9, 1.0)
        snap_topic = topics.snapshot("cam1", "person")

        def on(topic: str) -> list[bytes]:
            return [p for t, p in list(ha.messages) if t == topic]

        wait_for(lambda: on(config_topic) and on(snap_topic), 10, "discovery and snapshot")
        assert json.loads(on(config_topic)[0])["cmps"]["edge_dev-a_cam1_person_snapshot"]
        jpeg = on(snap_topic)[0]
        assert len(jpeg) <= cfg.publish_max_bytes
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (576, 768, 3)
        assert not ha.publish("homeassistant/status", b"online").is_failure
        wait_for(lambda: len(on(config_topic)) == 2, 10, "discovery again after the birth message")
        fresh = connect(fleet, "operator")  # a new subscription: both are retained
        try:
            fresh.subscribe(config_topic, snap_topic)
            wait_for(
                lambda: {t for t, _ in fresh.messages} == {config_topic, snap_topic}, 10, "retained"
            )
        finally:
            fresh.close()
    finally:
        announcer.stop()
        keeper.close(5)
        pub.stop(2)
        ha.close()
