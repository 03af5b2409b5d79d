"""The publisher: the daemon's one handle on MQTT delivery.

It composes three parts, each testable alone:
- `MqttSession` (`agent.publish.session`): the paho client, TLS, last will, retained messages,
  subscriptions, reconnects, and the status snapshot the daemon pushes with `set_status`;
- `DeliveryPump` (`agent.publish.pump`): hand-off queue -> store -> in-flight window, replay in
  commit order, PUBACK bookkeeping and verified gateway acks, in its own thread;
- a `Store` (`agent.publish.store`): the on-disk `Outbox` (SQLite WAL), or a `MemoryStore`
  when `outbox.enabled` is false.

Threads: the callers (inference loop, Florence-2 worker) only `submit` (a non-blocking put into
a bounded queue; a full queue refuses and counts); the pump thread owns the store; paho's
network thread only posts events to the pump's inbox and never calls application code.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from agent.contracts.payloads import StatusMessage
from agent.contracts.streams import Stream
from agent.contracts.topics import Topics
from agent.publish.acks import accept_ack
from agent.publish.checkpoint import Checkpointer
from agent.publish.config import MqttConfig, OutboxConfig
from agent.publish.events import Inbox
from agent.publish.memory import MemoryStore
from agent.publish.outbox import Outbox, open_outbox
from agent.publish.pump import DELETE_FLUSH_ROWS, DeliveryPump
from agent.publish.session import MqttSession
from agent.publish.store import OutboxMessage, Store
from agent.publish.tls import PublisherConfigError, build_tls_context
from agent.trust.signing import trusted_key_map

__all__ = [
    "Publisher",
    "PublisherConfigError",
    "PublisherStats",
    "SubmitFn",
    "build_tls_context",
]

log = structlog.get_logger(__name__)

_DETECTIONS = Stream.DETECTIONS.value

SubmitFn = Callable[[str, int, bytes], bool]
"""submit(camera, seq, payload) -> accepted, for one stream; never blocks."""


@dataclass(frozen=True)
class PublisherStats:
    """Counters since this Publisher was created (the daemon puts them in health and status)."""

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
    acks_refused: int = 0
    outbox_quarantined: int = 0


def open_store(cfg: OutboxConfig, state_dir: Path) -> tuple[Store, int]:
    """The store for `cfg`, opened now so a bad outbox path fails at start, not in a thread;
    with how many corrupt outbox files were moved aside (0 or 1)."""
    if not cfg.enabled:
        return MemoryStore(cfg.inflight), 0
    path = cfg.path or (state_dir / "outbox.sqlite3")
    outbox, aside = open_outbox(
        path, cfg.max_bytes, cfg.max_rows, cfg.synchronous, autocheckpoint=False
    )
    return outbox, 0 if aside is None else 1


class Publisher:
    """Publishes detections (via the store), status, health, OTA state; receives commands/acks.

    `gateway_keys` ({key id: base64 raw ed25519 key}) verify the gateway's signed acks; they are
    required with `outbox.require_gateway_ack`.
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        outbox: OutboxConfig,
        topics: Topics,
        state_dir: Path,
        boot_id: str,
        gateway_keys: Mapping[str, str] | None = None,
    ) -> None:
        try:
            keys = trusted_key_map(gateway_keys or {})
        except ValueError as err:
            raise PublisherConfigError(f"gateway keys: {err}") from None
        if outbox.require_gateway_ack and not keys:
            raise PublisherConfigError(
                "outbox.require_gateway_ack needs at least one gateway key to verify acks "
                "(trust.gateway_keys)"
            )
        self._topics = topics
        self._boot_id = boot_id
        self._qos = mqtt.detections_qos
        self._inbox = Inbox(wake_every=max(1, min(DELETE_FLUSH_ROWS, outbox.inflight // 2)))
        self._session = MqttSession(mqtt, topics, boot_id, outbox.inflight, self._inbox)
        self._store, self._quarantined = open_store(outbox, state_dir)
        check = functools.partial(accept_ack, device=topics.device, gateway_keys=keys)
        self._pump = DeliveryPump(self._store, self._session, outbox, mqtt.queue_size, check)
        self._checkpointer: Checkpointer | None = None
        if isinstance(self._store, Outbox):
            self._checkpointer = Checkpointer(self._store)
            self._pump.on_round = self._checkpointer.on_round
        if outbox.require_gateway_ack:
            self._session.subscribe(topics.ack, self._inbox.on_ack_payload, 1)
        self._topic_cache: dict[tuple[str, str], str] = {}
        self._started = self._stopped = False
        log.info(
            "publisher.configured",
            outbox=str(getattr(self._store, "path", "memory")),
            outbox_rows=self._store.count,
            gateway_ack=outbox.require_gateway_ack,
            gateway_keys=sorted(keys),
        )

    # -- hand-off ----------------------------------------------------------------------------
    def submit(self, stream: Stream, camera: str, seq: int, payload: bytes) -> bool:
        """Hand a message of `stream` over without blocking; False (counted) when full."""
        return self._submit(stream.value, camera, seq, payload)

    def submit_detection(self, camera: str, seq: int, payload: bytes) -> bool:
        """Hand a YOLO detection message over (stream `detections`); the inference loop's."""
        return self._submit(_DETECTIONS, camera, seq, payload)

    def _submit(self, stream: str, camera: str, seq: int, payload: bytes) -> bool:
        topic = self._topic_cache.get((stream, camera))
        if topic is None:
            topic = self._topics.stream(stream, camera)
            self._topic_cache[(stream, camera)] = topic
        msg = OutboxMessage(topic, camera, self._boot_id, seq, self._qos, payload, stream)
        return self._pump.submit(msg)

    def submitter(self, stream: Stream) -> SubmitFn:
        """A `submit(camera, seq, payload)` for one stream (the Florence-2 worker's)."""
        return functools.partial(self.submit, stream)

    # -- the session's surface -----------------------------------------------------------------
    def set_status(self, status: StatusMessage) -> None:
        """Push the daemon's status snapshot: published retained (online) now and on every
        reconnect, and as `offline` at stop. paho's thread never asks for it."""
        self._session.set_status(status)

    def publish_health(self, payload: bytes) -> None:
        """QoS 0, not retained, best effort (dropped while disconnected)."""
        self._session.publish_health(self._topics.health, payload)

    def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish retained now if connected; the latest per topic is re-published on reconnect."""
        self._session.publish_retained(topic, payload, qos)

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None], qos: int = 1) -> None:
        """Subscribe now if connected and again on every reconnect; callback(topic, payload)
        runs on paho's network thread and must return quickly."""
        self._session.subscribe(topic, callback, qos)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; never blocks or raises on an unreachable broker."""
        if self._started:
            raise RuntimeError("Publisher.start() called twice")
        self._started = True
        self._pump.start()
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._session.start()

    def stats(self) -> PublisherStats:
        """A snapshot of the counters (cheap; any thread)."""
        return PublisherStats(
            connected=self._session.connected,
            outbox_depth=self._store.count,
            outbox_dropped=self._store.dropped,
            outbox_bytes=self._store.bytes,
            connects=self._session.connects,
            outbox_quarantined=self._quarantined,
            **self._pump.counters(),
        )

    def stop(self, timeout: float) -> None:
        """Drain what we can within `timeout`, publish retained offline, disconnect cleanly."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            self._store.close()
            return
        deadline = time.monotonic() + timeout
        self._pump.drain(0.6 * timeout)  # commit the queue, deliver while connected
        pump_done = self._pump.stop(deadline - time.monotonic() - 0.2 * timeout)
        if self._checkpointer is not None:
            self._checkpointer.stop(1.0)
        self._session.stop(max(0.05, deadline - time.monotonic()))
        self._account_leftovers(pump_done)
        log.info("publisher.stopped", **asdict(self.stats()))

    def _account_leftovers(self, pump_done: bool) -> None:
        """Log (and for memory, count as dropped) what was not delivered; close the store."""
        leftover = self._pump.queue_depth
        if leftover:
            self._store.dropped += leftover
            log.error("publisher.queue_not_committed_at_stop", rows=leftover)
        remaining = self._store.count
        if isinstance(self._store, MemoryStore) and remaining:
            log.error("publisher.undelivered_at_stop", rows=remaining, outbox=False)
        elif remaining:
            log.info("publisher.outbox_kept", rows=remaining)
        if pump_done:
            self._store.close()
        elif isinstance(self._store, MemoryStore):
            self._store.dropped += remaining
