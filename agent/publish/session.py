"""The MQTT session: one paho-mqtt 2.x client with its TLS context, last will, retained
messages, subscriptions and reconnects.

It owns no delivery state. On every (re)connect it re-subscribes, re-publishes the retained
topics (the status from the last snapshot the daemon pushed with `set_status`) and tells the
delivery pump through its `Inbox`. paho's network thread never calls into the application: the
status is a snapshot pushed in, and subscription callbacks run without any lock held.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from agent.contracts.payloads import StatusMessage, dump_payload, rfc3339_ms
from agent.contracts.topics import Topics
from agent.publish.config import MqttConfig
from agent.publish.events import Connected, Disconnected, Inbox, Puback
from agent.publish.tls import broker_password, build_tls_context

log = structlog.get_logger(__name__)

RETAINED_EXTRA = 64
"""Room in paho's queue beyond the detection window, for status, OTA state and health."""

MessageCallback = Callable[[str, bytes], None]


def stamped(status: StatusMessage, state: str) -> bytes:
    """The status snapshot with `state` and the current time, as published."""
    return dump_payload(status.model_copy(update={"state": state, "ts": rfc3339_ms(time.time())}))


class MqttSession:
    """The broker connection; thread-safe for the daemon, the pump and paho's thread."""

    def __init__(
        self, cfg: MqttConfig, topics: Topics, boot_id: str, window: int, inbox: Inbox
    ) -> None:
        self._cfg = cfg
        self._topics = topics
        self.inbox = inbox  # paho's callbacks post here; the pump reads it
        password = broker_password(cfg)
        tls_ctx = build_tls_context(cfg.tls) if cfg.tls is not None else None
        self._lock = threading.Lock()
        self._status = StatusMessage(
            device=topics.device, state="online", ts=rfc3339_ms(time.time()), boot_id=boot_id
        )
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._subs: dict[str, tuple[MessageCallback, int]] = {}
        self._connected = threading.Event()
        self._gen = 0
        self.connects = 0
        self._stopping = False
        self._client = self._make_client(password, window)
        if tls_ctx is not None:
            self._client.tls_set_context(tls_ctx)
        log.info(
            "mqtt.configured",
            host=cfg.host,
            port=cfg.port,
            protocol=cfg.protocol,
            tls=tls_ctx is not None,
            client_cert=cfg.tls is not None and cfg.tls.cert_file is not None,
            password=password is not None,
        )

    def _make_client(self, password: str | None, window: int) -> paho.Client:
        cfg = self._cfg
        client_id = cfg.client_id or f"edge-agent-{self._topics.device}"
        if cfg.protocol == "v5":
            client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
            )
        else:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=paho.MQTTv311,
                clean_session=True,
            )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, password)
        client.will_set(self._topics.status, stamped(self._status, "offline"), qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(window + RETAINED_EXTRA)
        client.max_queued_messages_set(window + RETAINED_EXTRA)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        return client

    # -- state -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether a connection is up now."""
        return self._connected.is_set()

    # -- the application's side --------------------------------------------------------------
    def set_status(self, status: StatusMessage) -> None:
        """Take a new status snapshot; publish it (retained, online) now if connected.

        The snapshot is what every later (re)connect publishes, and what `stop` publishes as
        offline; paho's thread never asks the application for it.
        """
        with self._lock:
            self._status = status
            payload = stamped(status, "online")
            self._retained[self._topics.status] = (payload, 1)
            if self._connected.is_set():
                self._client.publish(self._topics.status, payload, qos=1, retain=True)

    def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish retained now if connected; the latest per topic is re-published on reconnect."""
        with self._lock:
            self._retained[topic] = (payload, qos)
            if self._connected.is_set():
                self._client.publish(topic, payload, qos=qos, retain=True)

    def subscribe(self, topic: str, callback: MessageCallback, qos: int = 1) -> None:
        """Subscribe now if connected and again on every reconnect; `callback(topic, payload)`
        runs on paho's network thread (no lock held) and must return quickly."""
        with self._lock:
            self._subs[topic] = (callback, qos)
            if self._connected.is_set():
                self._client.subscribe(topic, qos)

    def publish_health(self, topic: str, payload: bytes) -> None:
        """QoS 0, not retained, best effort (dropped while disconnected)."""
        if self._connected.is_set():
            self._client.publish(topic, payload, qos=0, retain=False)

    def publish_row(self, gen: int, topic: str, payload: bytes, qos: int) -> int | None:
        """Publish one stored message on connection `gen`; its mid, or None when that
        connection is gone (the pump waits for the event that resets its replay)."""
        if self._gen != gen or not self._connected.is_set():
            return None
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; never blocks or raises on an unreachable broker."""
        kwargs: dict[str, Any] = {"keepalive": self._cfg.keepalive_s}
        if self._cfg.protocol == "v5":
            kwargs["clean_start"] = True
        self._client.connect_async(self._cfg.host, self._cfg.port, **kwargs)
        self._client.loop_start()

    def stop(self, timeout: float) -> None:
        """Publish the retained offline status (when connected) and disconnect cleanly."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        if self._connected.is_set():
            with self._lock:
                offline = stamped(self._status, "offline")
                self._retained[self._topics.status] = (offline, 1)
                info = self._client.publish(self._topics.status, offline, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            if not info.is_published():
                log.warning("publisher.offline_not_confirmed")
        # A normal DISCONNECT: the broker discards the last will.
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (network thread) ------------------------------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt.connect_refused", reason=str(reason))
            return
        client.drop_out_messages()  # the store replays them; paho's copies would be duplicates
        with self._lock:
            # The generation stops the pump from publishing on this connection before it has
            # processed the Connected event (and reset its replay cursor).
            self._gen += 1
            gen = self._gen
            self.connects += 1
            if self._topics.status not in self._retained:
                self._retained[self._topics.status] = (stamped(self._status, "online"), 1)
            # Subscriptions first: whoever reacts to our "online" status (the gateway sending
            # an OTA command) must find us subscribed; the broker handles packets in order.
            for topic, (_cb, qos) in self._subs.items():
                client.subscribe(topic, qos)
            for topic, (payload, qos) in self._retained.items():
                client.publish(topic, payload, qos=qos, retain=True)
            self._connected.set()
        self.inbox.post(Connected(gen))
        log.info("mqtt.connected", host=self._cfg.host, port=self._cfg.port, n=self.connects)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self.inbox.post(Disconnected())
        if was and not self._stopping:
            log.warning("mqtt.disconnected", reason=str(reason))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.debug("mqtt.connect_failed", host=self._cfg.host, port=self._cfg.port)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        # Wake the pump only when enough acks wait; otherwise it picks them up on its next
        # round. Fewer thread wake-ups per message keep latency low on a busy CPU.
        self.inbox.post_lazy(Puback(mid, reason.is_failure))

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            subs = list(self._subs.items())
        for sub, (callback, _qos) in subs:
            if paho.topic_matches_sub(sub, msg.topic):
                try:
                    callback(msg.topic, msg.payload)
                except Exception as err:  # a subscriber's bug must not kill the network thread
                    log.exception("publisher.callback_failed", topic=msg.topic, error=str(err))
