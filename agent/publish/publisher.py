"""The MQTT publisher: hand-off queue -> outbox (SQLite WAL) -> paho-mqtt 2.x, in commit order.

Threads and who owns what:
- the caller (inference loop) only does `submit_detection`: a non-blocking put into a bounded
  queue; a full queue refuses the message and counts it (`queue_dropped`);
- the pump thread owns the store (the `Outbox`, or an in-memory `MemoryStore` when the outbox
  is disabled), the in-flight window (`mid -> row id`) and the replay cursor. It commits queued
  messages in batches, publishes the next rows while the window has room, and deletes rows on
  PUBACK (or marks them, and deletes on a gateway ack, with `require_gateway_ack`);
- paho's loop thread runs the network. Its callbacks never take the pump's state: they append
  events to a deque and wake the pump (paho calls `on_publish` with its own mutex held).

On every (re)connect paho's own copy of unacknowledged messages is dropped
(`drop_out_messages`) and the pump replays from the start of the store, so the store is the only
source of truth; duplicates are possible and consumers drop them by (device, camera, boot_id,
seq) — see docs/delivery.md.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from agent.messages.payloads import StatusMessage, dump_payload, rfc3339_ms
from agent.messages.topics import Topics
from agent.publish.ack import AckMessage
from agent.publish.config import MqttConfig, OutboxConfig, TlsConfig
from agent.publish.outbox import Outbox, OutboxMessage, OutboxRow

log = structlog.get_logger(__name__)

RETAINED_EXTRA = 64
"""Room in paho's queue beyond the detection window, for status, OTA state and health."""
GW_CHECK_S = 0.5
"""How often the oldest row waiting for a gateway ack is looked up (with require_gateway_ack)."""
DELETE_FLUSH_ROWS = 64
DELETE_FLUSH_S = 0.025
"""PUBACKed rows are deleted in batches of this many, or after this long."""


class PublisherConfigError(Exception):
    """The MQTT or TLS settings cannot work (missing files, half-configured TLS, no password)."""


@dataclass(frozen=True)
class PublisherStats:
    """Counters since this Publisher was created (the lead puts them in health and status)."""

    connected: bool
    queue_depth: int
    queue_dropped: int
    outbox_depth: int
    outbox_dropped: int
    published: int
    acked: int
    inflight: int = 0
    outbox_bytes: int = 0
    rejected: int = 0
    connects: int = 0


# -- TLS ------------------------------------------------------------------------------------


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise PublisherConfigError(f"mqtt.tls.{what}: {path} does not exist or is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise PublisherConfigError(f"mqtt.tls.{what}: cannot read {path}: {err.strerror}") from None


def build_tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client TLS context that trusts only `tls.ca_file` (CA pinning), TLS >= 1.2.

    Loads the client certificate and key when given. Raises PublisherConfigError naming the
    field on a missing, unreadable or invalid file, or on a certificate without its key.
    """
    if (tls.cert_file is None) != (tls.key_file is None):
        raise PublisherConfigError("mqtt.tls: cert_file and key_file must be given together")
    _check_file(tls.ca_file, "ca_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(tls.ca_file))
    except ssl.SSLError as err:
        raise PublisherConfigError(
            f"mqtt.tls.ca_file: {tls.ca_file} is not a PEM CA: {err}"
        ) from None
    if tls.cert_file is not None and tls.key_file is not None:
        _check_file(tls.cert_file, "cert_file")
        _check_file(tls.key_file, "key_file")
        try:
            ctx.load_cert_chain(certfile=str(tls.cert_file), keyfile=str(tls.key_file))
        except ssl.SSLError as err:
            raise PublisherConfigError(
                f"mqtt.tls: cannot load cert_file {tls.cert_file} with key_file "
                f"{tls.key_file}: {err.reason or err}"
            ) from None
    ctx.check_hostname = not tls.insecure_skip_hostname_check
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- in-memory store (outbox disabled) ------------------------------------------------------


class MemoryStore:
    """The store used when `outbox.enabled` is false: at most `capacity` messages in memory.

    Same interface as `Outbox`. It only holds the in-flight window; further messages wait in
    the hand-off queue, whose overflow is counted. Nothing survives a restart.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[int, OutboxRow] = OrderedDict()
        self._pubacked: set[int] = set()
        self._next_id = 1
        self._bytes = 0
        self.dropped = 0
        self._appended: list[OutboxRow] = []

    @property
    def count(self) -> int:
        return len(self._rows)

    @property
    def bytes(self) -> int:
        return self._bytes

    def room(self) -> int:
        """How many more messages fit."""
        return self.capacity - len(self._rows)

    def append(self, msgs: Sequence[OutboxMessage]) -> int:
        self._appended = []
        for m in msgs:
            row = OutboxRow(self._next_id, m.topic, m.camera, m.boot_id, m.seq, m.qos, m.payload)
            self._rows[row.id] = row
            self._appended.append(row)
            self._next_id += 1
            self._bytes += m.size
        return 0

    def take_appended(self) -> list[OutboxRow]:
        rows, self._appended = self._appended, []
        return rows

    def next_batch(self, after_id: int, limit: int) -> list[OutboxRow]:
        out = []
        for row_id, row in self._rows.items():
            if row_id > after_id:
                out.append(row)
                if len(out) >= limit:
                    break
        return out

    def delete(self, ids: Iterable[int]) -> int:
        n = 0
        for i in ids:
            row = self._rows.pop(i, None)
            if row is not None:
                n += 1
                self._pubacked.discard(i)
                self._bytes -= (
                    len(row.payload)
                    + len(row.topic)
                    + 2 * (len(row.boot_id) + len(row.camera))
                    + 48
                )
        return n

    def mark_pubacked(self, ids: Iterable[int]) -> None:
        self._pubacked.update(i for i in ids if i in self._rows)

    def oldest_pubacked(self) -> int | None:
        return min(self._pubacked, default=None)

    def delete_acked(self, boot_id: str, camera: str, seq_upto: int) -> int:
        ids = [
            r.id
            for r in self._rows.values()
            if r.id in self._pubacked
            and r.boot_id == boot_id
            and r.camera == camera
            and r.seq <= seq_upto
        ]
        return self.delete(ids)

    def close(self) -> None:
        self._rows.clear()


# -- the publisher ----------------------------------------------------------------------------


class Publisher:
    """Publishes detections (via the outbox), status, health, OTA state; receives commands/acks."""

    def __init__(
        self,
        mqtt: MqttConfig,
        outbox: OutboxConfig,
        topics: Topics,
        state_dir: Path,
        boot_id: str,
        status_provider: Callable[[], StatusMessage],
    ) -> None:
        self._cfg = mqtt_cfg = mqtt
        self._ocfg = outbox
        self._topics = topics
        self._boot_id = boot_id
        self._status_provider = status_provider
        self._window = outbox.inflight
        self._qos = mqtt_cfg.detections_qos
        try:
            password = mqtt_cfg.password()
        except ValueError as err:
            raise PublisherConfigError(str(err)) from None
        tls_ctx = build_tls_context(mqtt_cfg.tls) if mqtt_cfg.tls is not None else None

        # The store is opened here so a bad outbox path fails at start, not in a thread.
        self._store: Outbox | MemoryStore
        if outbox.enabled:
            path = outbox.path or (state_dir / "outbox.sqlite3")
            self._store = Outbox(
                path, outbox.max_bytes, outbox.max_rows, outbox.synchronous, autocheckpoint=False
            )
        else:
            self._store = MemoryStore(self._window)

        self._queue: queue.Queue[OutboxMessage] = queue.Queue(maxsize=mqtt_cfg.queue_size)
        self._topic_cache: dict[str, str] = {}
        self._counter_lock = threading.Lock()
        self._queue_dropped = 0
        self._published = 0
        self._acked = 0
        self._rejected = 0
        self._connects = 0
        self._mem_dropped = 0

        # Pump-thread state (only the pump touches these).
        self._inflight: dict[int, int] = {}
        self._cursor = 0
        self._pump_connected = False
        self._pump_gen = 0
        self._conn_gen = 0
        self._gw_pending = 0  # hint: rows may wait for a gateway ack (checked, never trusted)
        self._gw_oldest: int | None = None  # oldest row waiting for a gateway ack ...
        self._gw_oldest_since = 0.0  # ... and since when it has been the oldest
        self._gw_checked = 0.0
        self._to_delete: list[int] = []
        self._fresh: deque[OutboxRow] = deque()
        # A full window is refilled in halves: one pump wake-up per half window of PUBACKs.
        self._wake_acks = max(1, min(DELETE_FLUSH_ROWS, self._window // 2))
        self._last_appended = -1
        self._to_delete_since = 0.0
        self._wal_checked = 0.0
        self._ckpt_wake = threading.Event()
        self._ckpt: threading.Thread | None = None

        # Cross-thread signalling.
        self._events: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._exit = threading.Event()
        self._connected = threading.Event()
        self._pump: threading.Thread | None = None
        self._started = False
        self._stopped = False

        # Retained topics and subscriptions, replayed on every connect.
        self._retained_lock = threading.Lock()
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._subs: dict[str, tuple[Callable[[str, bytes], None], int]] = {}
        if outbox.require_gateway_ack:
            self._subs[topics.ack] = (self._on_ack_payload, 1)

        self._client = self._make_client(password, tls_ctx)
        log.info(
            "publisher.configured",
            host=mqtt_cfg.host,
            port=mqtt_cfg.port,
            protocol=mqtt_cfg.protocol,
            tls=tls_ctx is not None,
            client_cert=mqtt_cfg.tls is not None and mqtt_cfg.tls.cert_file is not None,
            password=password is not None,
            outbox=str(getattr(self._store, "path", "memory")),
            outbox_rows=self._store.count,
        )

    # -- construction ---------------------------------------------------------------------
    def _make_client(self, password: str | None, tls_ctx: ssl.SSLContext | None) -> paho.Client:
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
        if tls_ctx is not None:
            client.tls_set_context(tls_ctx)
        will = self._status("offline", self._offline_template())
        client.will_set(self._topics.status, dump_payload(will), qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(self._window + RETAINED_EXTRA)
        client.max_queued_messages_set(self._window + RETAINED_EXTRA)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        return client

    def _offline_template(self) -> StatusMessage:
        return StatusMessage(
            device=self._topics.device,
            state="offline",
            ts=rfc3339_ms(time.time()),
            boot_id=self._boot_id,
        )

    @staticmethod
    def _status(state: str, base: StatusMessage) -> StatusMessage:
        return base.model_copy(update={"state": state, "ts": rfc3339_ms(time.time())})

    # -- public API ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; never blocks or raises on an unreachable broker."""
        if self._started:
            raise RuntimeError("Publisher.start() called twice")
        self._started = True
        self._pump = threading.Thread(target=self._pump_main, name="outbox-pump", daemon=True)
        self._pump.start()
        if isinstance(self._store, Outbox):
            self._ckpt = threading.Thread(
                target=self._checkpoint_main, name="outbox-checkpoint", daemon=True
            )
            self._ckpt.start()
        kwargs: dict[str, Any] = {"keepalive": self._cfg.keepalive_s}
        if self._cfg.protocol == "v5":
            kwargs["clean_start"] = True
        self._client.connect_async(self._cfg.host, self._cfg.port, **kwargs)
        self._client.loop_start()

    def submit_detection(self, camera: str, seq: int, payload: bytes) -> bool:
        """Hand a detection over without blocking; False (counted) when the queue is full."""
        topic = self._topic_cache.get(camera)
        if topic is None:
            topic = self._topics.detections(camera)
            self._topic_cache[camera] = topic
        msg = OutboxMessage(topic, camera, self._boot_id, seq, self._qos, payload)
        if self._exit.is_set():
            with self._counter_lock:
                self._queue_dropped += 1
            return False
        try:
            self._queue.put_nowait(msg)
        except queue.Full:
            with self._counter_lock:
                self._queue_dropped += 1
            return False
        self._wake.set()
        return True

    def publish_health(self, payload: bytes) -> None:
        """QoS 0, not retained, best effort (dropped while disconnected)."""
        if self._connected.is_set():
            self._client.publish(self._topics.health, payload, qos=0, retain=False)

    def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish retained now if connected; the latest per topic is re-published on reconnect."""
        with self._retained_lock:
            self._retained[topic] = (payload, qos)
            if self._connected.is_set():
                self._client.publish(topic, payload, qos=qos, retain=True)

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None], qos: int = 1) -> None:
        """Subscribe now if connected and again on every reconnect; callback(topic, payload)
        runs on paho's network thread and must return quickly."""
        with self._retained_lock:
            self._subs[topic] = (callback, qos)
            if self._connected.is_set():
                self._client.subscribe(topic, qos)

    def republish_status(self) -> None:
        """Publish the provider's status, retained QoS 1, state online."""
        status = self._status("online", self._status_provider())
        self.publish_retained(self._topics.status, dump_payload(status), 1)

    def stats(self) -> PublisherStats:
        """A snapshot of the counters (cheap; any thread)."""
        store = self._store
        return PublisherStats(
            connected=self._connected.is_set(),
            queue_depth=self._queue.qsize(),
            queue_dropped=self._queue_dropped,
            outbox_depth=store.count,
            outbox_dropped=store.dropped + self._mem_dropped,
            published=self._published,
            acked=self._acked,
            inflight=len(self._inflight),
            outbox_bytes=store.bytes,
            rejected=self._rejected,
            connects=self._connects,
        )

    def stop(self, timeout: float) -> None:
        """Drain what we can within `timeout`, publish retained offline, disconnect cleanly."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        if not self._started:
            self._store.close()
            return
        # 1. Let the pump commit everything queued and deliver while connected (60% of budget).
        drain_until = time.monotonic() + 0.6 * timeout
        while time.monotonic() < drain_until:
            if self._queue.empty() and (self._store.count == 0 or not self._connected.is_set()):
                break
            if self._ocfg.require_gateway_ack and not self._inflight and self._queue.empty():
                break
            self._wake.set()
            time.sleep(0.01)
        self._exit.set()
        self._wake.set()
        if self._pump is not None:
            self._pump.join(max(0.1, deadline - time.monotonic() - 0.2 * timeout))
        if self._ckpt is not None:
            self._ckpt_wake.set()
            self._ckpt.join(1.0)
        # 2. Explicit retained offline status.
        if self._connected.is_set():
            try:
                offline = self._status("offline", self._status_provider())
            except Exception as err:  # the provider is the caller's code; stop must finish
                log.warning("publisher.status_provider_failed", error=str(err))
                offline = self._status("offline", self._offline_template())
            with self._retained_lock:
                self._retained[self._topics.status] = (dump_payload(offline), 1)
                info = self._client.publish(
                    self._topics.status, dump_payload(offline), qos=1, retain=True
                )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            if not info.is_published():
                log.warning("publisher.offline_not_confirmed")
        # 3. Disconnect (a normal DISCONNECT: the broker discards the last will).
        self._client.disconnect()
        self._client.loop_stop()
        remaining = self._store.count
        leftover = self._queue.qsize()
        if leftover:
            self._mem_dropped += leftover
            log.error("publisher.queue_not_committed_at_stop", rows=leftover)
        if isinstance(self._store, MemoryStore) and remaining:
            self._mem_dropped += remaining
            log.error("publisher.undelivered_at_stop", rows=remaining, outbox=False)
        elif remaining:
            log.info("publisher.outbox_kept", rows=remaining)
        if self._pump is None or not self._pump.is_alive():
            self._store.close()
        log.info("publisher.stopped", **self._stats_fields())

    def _stats_fields(self) -> dict[str, Any]:
        s = self.stats()
        return {k: getattr(s, k) for k in s.__dataclass_fields__}

    # -- paho callbacks (network thread; no pump state here) -----------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt.connect_refused", reason=str(reason))
            return
        # The connection generation stops the pump from publishing on this connection before
        # it has processed the "connected" event (and reset its replay cursor).
        self._conn_gen += 1
        gen = self._conn_gen
        client.drop_out_messages()  # the store replays them; paho's copies would be duplicates
        self._connects += 1
        with self._retained_lock:
            try:
                status = self._status("online", self._status_provider())
                self._retained[self._topics.status] = (dump_payload(status), 1)
            except Exception as err:  # the provider is the caller's code
                log.error("publisher.status_provider_failed", error=str(err))
            # Subscriptions first: whoever reacts to our "online" status (the gateway sending
            # an OTA command) must find us subscribed; the broker handles packets in order.
            for topic, (_cb, qos) in self._subs.items():
                client.subscribe(topic, qos)
            for topic, (payload, qos) in self._retained.items():
                client.publish(topic, payload, qos=qos, retain=True)
            self._connected.set()
        self._events.append(("connected", gen))
        self._wake.set()
        log.info("mqtt.connected", host=self._cfg.host, port=self._cfg.port, n=self._connects)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._events.append(("disconnected",))
        self._wake.set()
        if was and not self._stopped:
            log.warning("mqtt.disconnected", reason=str(reason))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.debug("mqtt.connect_failed", host=self._cfg.host, port=self._cfg.port)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        self._events.append(("puback", mid, reason.is_failure))
        # Wake the pump only when half a window (at most a delete batch) of acks is waiting;
        # otherwise it picks the acks up on its next round (a submit, or within
        # DELETE_FLUSH_S). Fewer thread wake-ups per message keep latency low on a busy CPU.
        if len(self._events) >= self._wake_acks:
            self._wake.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        for sub, (callback, _qos) in list(self._subs.items()):
            if paho.topic_matches_sub(sub, msg.topic):
                try:
                    callback(msg.topic, msg.payload)
                except Exception as err:  # a subscriber's bug must not kill the network thread
                    log.exception("publisher.callback_failed", topic=msg.topic, error=str(err))

    def _on_ack_payload(self, topic: str, payload: bytes) -> None:
        try:
            ack = AckMessage.model_validate_json(payload)
        except ValidationError as err:
            log.warning("publisher.bad_ack", topic=topic, errors=err.error_count())
            return
        if ack.device != self._topics.device:
            log.warning("publisher.ack_for_other_device", device=ack.device)
            return
        self._events.append(("ack", ack))
        self._wake.set()

    # -- pump thread ---------------------------------------------------------------------------
    def _checkpoint_main(self) -> None:
        """Checkpoint the WAL off the publishing path: when it passes its budget, or each 2 s."""
        store = self._store
        if not isinstance(store, Outbox):
            return
        while not self._exit.is_set():
            self._ckpt_wake.wait(2.0)
            self._ckpt_wake.clear()
            if not self._exit.is_set():
                store.checkpoint()

    def _pump_main(self) -> None:
        while True:
            self._wake.wait(DELETE_FLUSH_S if self._to_delete or self._events else 0.1)
            self._wake.clear()
            exiting = self._exit.is_set()
            try:
                self._pump_once()
            except Exception as err:  # the pump must survive anything; it is logged loudly
                log.exception("publisher.pump_error", error=str(err))
                time.sleep(0.05)
            if exiting:
                return  # that last round committed the whole queue (Outbox) or what fits

    def _pump_once(self) -> None:
        store = self._store
        delete = self._to_delete
        mark: list[int] = []
        while self._events:
            ev = self._events.popleft()
            kind = ev[0]
            if kind == "connected":
                if delete:  # acked before the reconnect: do not replay them
                    self._acked += store.delete(delete)
                    delete.clear()
                    self._to_delete_since = 0.0
                self._pump_connected = True
                self._pump_gen = ev[1]
                self._inflight.clear()
                self._cursor = 0
            elif kind == "disconnected":
                self._pump_connected = False
                self._inflight.clear()
                self._cursor = 0
            elif kind == "puback":
                row_id = self._inflight.pop(ev[1], None)
                if row_id is None:
                    continue  # from a previous connection: that row is replayed anyway
                if ev[2]:
                    log.error("publisher.publish_rejected", row=row_id)
                    self._rejected += 1
                    delete.append(row_id)
                elif self._ocfg.require_gateway_ack:
                    mark.append(row_id)
                else:
                    delete.append(row_id)
            elif kind == "ack":
                self._apply_acks(mark, ev[1])
        # Deletes are batched (one transaction per DELETE_FLUSH_ROWS rows or DELETE_FLUSH_S):
        # they are off the latency path, and a crash before the flush only means duplicates.
        now = time.monotonic()
        if delete and not self._to_delete_since:
            self._to_delete_since = now
        if delete and (
            len(delete) >= DELETE_FLUSH_ROWS
            or now - self._to_delete_since >= DELETE_FLUSH_S
            or self._exit.is_set()
        ):
            self._acked += store.delete(delete)
            delete.clear()
            self._to_delete_since = 0.0
        if mark:
            store.mark_pubacked(mark)
            self._gw_pending += len(mark)

        self._ingest()
        self._fill_window()
        if isinstance(store, Outbox) and now - self._wal_checked >= 0.1:
            self._wal_checked = now
            if store.wal_over_budget():
                self._ckpt_wake.set()
        if self._ocfg.require_gateway_ack and self._gw_pending > 0:
            self._check_gateway_acks(now)

    def _check_gateway_acks(self, now: float) -> None:
        """Replay when the oldest row waiting for a gateway ack has waited too long.

        Timed per row, not per ack: acks for other cameras or boots keep coming while one
        stream has a hole the gateway will only fill (or skip) once it sees a replay.
        """
        if now - self._gw_checked < GW_CHECK_S:
            return
        self._gw_checked = now
        oldest = self._store.oldest_pubacked()
        if oldest is None:
            self._gw_pending, self._gw_oldest = 0, None
        elif oldest != self._gw_oldest:
            self._gw_oldest, self._gw_oldest_since = oldest, now
        elif now - self._gw_oldest_since > self._ocfg.gateway_ack_timeout_s:
            log.warning("publisher.gateway_ack_timeout", oldest_row=oldest)
            self._gw_oldest_since = now
            self._cursor = 0
            self._fill_window()

    def _apply_acks(self, mark: list[int], ack: AckMessage) -> None:
        # PUBACKs gathered so far in this round must be marked before the ack is applied.
        if mark:
            self._store.mark_pubacked(mark)
            self._gw_pending += len(mark)
            mark.clear()
        n = 0
        for entry in ack.acks:
            n += self._store.delete_acked(entry.boot_id, entry.camera, entry.seq_upto)
        self._acked += n
        self._gw_pending = max(0, self._gw_pending - n)

    def _ingest(self) -> None:
        """Move queued messages into the store, one transaction per batch."""
        batch_max = self._ocfg.batch_max
        while True:
            limit = batch_max
            if isinstance(self._store, MemoryStore):
                limit = min(limit, self._store.room())
            batch: list[OutboxMessage] = []
            while len(batch) < limit:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            self._store.append(batch)
            appended = self._store.take_appended()
            if appended:
                self._last_appended = appended[-1].id
            self._fresh.extend(appended)
            if len(self._fresh) > 2 * self._window:
                self._fresh.clear()  # a backlog: read it back from the store instead
            if len(batch) < limit:
                return

    def _fill_window(self) -> None:
        """Publish rows after the cursor while connected and the window has room."""
        if not self._pump_connected:
            return
        fresh = self._fresh
        while (room := self._window - len(self._inflight)) > 0:
            while fresh and fresh[0].id <= self._cursor:
                fresh.popleft()
            if fresh and fresh[0].id == self._cursor + 1:
                # Fast path: the rows just committed follow the cursor directly (ids are
                # consecutive within a process), so nothing older is unsent: no read-back.
                rows = []
                expect = self._cursor + 1
                while fresh and len(rows) < room and fresh[0].id == expect:
                    rows.append(fresh.popleft())
                    expect += 1
            elif not fresh and self._cursor == self._last_appended:
                return  # everything committed in this process is handed over already
            else:
                fresh.clear()
                rows = self._store.next_batch(self._cursor, min(room, 256))
            if not rows:
                return
            for row in rows:
                if not self._connected.is_set() or self._conn_gen != self._pump_gen:
                    return  # a disconnect or a new connection: wait for its event
                info = self._client.publish(row.topic, row.payload, qos=row.qos)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return  # not connected any more: the disconnect event resets the cursor
                self._inflight[info.mid] = row.id
                self._cursor = row.id
                self._published += 1
