"""Helpers shared by the publish tests: a recording subscriber, a gateway that acks, configs.

Everything here talks to a real Mosquitto over TCP; nothing is faked.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent.contracts.ack import AckEntry, AckMessage
from agent.contracts.payloads import StatusMessage, rfc3339_ms
from agent.publish.config import MqttConfig, OutboxConfig
from agent.trust.signing import key_id, public_key_b64, sign
from tests.helpers.polling import wait_for as wait_for  # shared by the publish tests

DEVICE = "dev-a"
BOOT = "b0070000000000a1"

GATEWAY_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
"""The test gateway's signing key (a fixed real ed25519 key)."""
GATEWAY_KEYS = {key_id(GATEWAY_KEY): public_key_b64(GATEWAY_KEY)}
"""What a device trusts: {key id: base64 public key}."""


def ack_bytes(
    device: str,
    entries: list[tuple[str, str, int]],
    stream: str = "detections",
    key: Ed25519PrivateKey | None = GATEWAY_KEY,
) -> bytes:
    """An edge.ack/2 payload for (boot_id, camera, seq_upto) entries, signed with `key`
    (unsigned when None)."""
    msg = AckMessage(
        device=device,
        issued=rfc3339_ms(time.time()),
        acks=[AckEntry(boot_id=b, camera=c, stream=stream, seq_upto=s) for b, c, s in entries],
    )
    if key is not None:
        msg = sign(msg, key)
    return msg.model_dump_json(by_alias=True).encode()


def mqtt_cfg(port: int, **kw: Any) -> MqttConfig:
    """An MqttConfig for a test broker on 127.0.0.1:`port` with fast reconnects."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        "keepalive_s": 5,
    }
    base.update(kw)
    return MqttConfig(**base)


def outbox_cfg(tmp: Path, **kw: Any) -> OutboxConfig:
    """An OutboxConfig storing under `tmp`."""
    return OutboxConfig(path=tmp / "outbox.sqlite3", **kw)


def status(device: str = DEVICE, boot_id: str = BOOT) -> StatusMessage:
    """A status snapshot like the daemon's: online, no cameras."""
    return StatusMessage(device=device, state="online", ts=rfc3339_ms(time.time()), boot_id=boot_id)


def payload(camera: str, seq: int, boot_id: str = BOOT, pad: int = 0) -> bytes:
    """A small JSON detection-like payload carrying its dedup key (and `pad` filler bytes)."""
    return json.dumps(
        {"device": DEVICE, "camera": camera, "boot_id": boot_id, "seq": seq, "pad": "x" * pad}
    ).encode()


@dataclass
class Collector:
    """A subscriber that records detection keys per (boot_id, camera), and statuses.

    With `ack_device` it also acts as the gateway: it acks every 50 ms what it received.
    A persistent session (clean_start False) keeps QoS 1 messages queued across its own
    reconnects and the broker's restarts when persistence is on.
    """

    port: int
    topic: str = "edge/+/cameras/+/detections"
    client_id: str = "collector"
    ack_device: str | None = None
    tls: ssl.SSLContext | None = None
    received: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    statuses: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._max: dict[tuple[str, str], int] = {}
        self._acked: dict[tuple[str, str], int] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        if self.tls is not None:
            self.client.tls_set_context(self.tls)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._acker: threading.Thread | None = None

    def _on_connect(self, client: mqtt.Client, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        client.subscribe([(self.topic, 1), ("edge/+/status", 1)])
        self.connected.set()

    def _on_message(self, client: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            with self.lock:
                self.statuses.append(json.loads(msg.payload)["state"])
            return
        d = json.loads(msg.payload)
        key = (d["boot_id"], d["camera"])
        with self.lock:
            self.received[key].append(d["seq"])
            self._max[key] = max(self._max.get(key, -1), d["seq"])

    def _ack_loop(self) -> None:
        while not self._stop.wait(0.05):
            with self.lock:
                todo = [(k, v) for k, v in self._max.items() if self._acked.get(k) != v]
            if not todo:
                continue
            data = ack_bytes(self.ack_device or "", [(k[0], k[1], v) for k, v in todo])
            info = self.client.publish(f"edge/{self.ack_device}/ack", data, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                for k, v in todo:
                    self._acked[k] = v

    def start(self) -> Collector:
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(
            "127.0.0.1", self.port, keepalive=5, clean_start=False, properties=props
        )
        self.client.loop_start()
        if self.ack_device is not None:
            self._acker = threading.Thread(target=self._ack_loop, daemon=True)
            self._acker.start()
        wait_for(self.connected.is_set, 10, "collector connected")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._acker is not None:
            self._acker.join(2)
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def seqs(self, camera: str, boot_id: str = BOOT) -> list[int]:
        """Copy of the seqs received for (boot_id, camera), in arrival order."""
        with self.lock:
            return list(self.received.get((boot_id, camera), []))

    def distinct(self, camera: str, boot_id: str = BOOT) -> set[int]:
        return set(self.seqs(camera, boot_id))


def first_occurrences(seqs: list[int]) -> list[int]:
    """The arrival order with duplicates removed (what a deduplicating consumer sees)."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def retained_status(port: int, device: str = DEVICE, timeout: float = 3.0) -> str | None:
    """The retained status of `device`, read with a fresh subscription (None if none)."""
    got: list[str] = []
    ev = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_connect(client: mqtt.Client, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(f"edge/{device}/status", 1)

    def on_message(client: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(json.loads(msg.payload)["state"])
        ev.set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    ev.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return got[0] if got else None
