"""The delivery pump: hand-off queue -> store -> in-flight window -> MQTT session.

One thread owns the store (an `Outbox` on disk, or a `MemoryStore`), the in-flight window
(`mid -> row id`), the replay cursor and the low-water marks. It commits queued messages in
batches, publishes the next rows in commit order while the window has room, and deletes rows
on PUBACK (or marks them, and deletes them on a verified gateway ack, with
`require_gateway_ack`). paho's thread only posts events to the session's `Inbox`.

On every (re)connect the session drops paho's own copies of unacknowledged messages and the
pump replays from the start of the store, so the store is the only source of truth; duplicates
are possible and consumers drop them by (device, camera, boot_id, stream, seq). Each message is
stamped at publish time with its stream's `oldest_unacked_seq` (`agent.publish.lowwater`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from agent.contracts.ack import AckMessage
from agent.publish.acks import AckRefused
from agent.publish.config import OutboxConfig
from agent.publish.events import AckReceived, Connected, Disconnected, Puback
from agent.publish.lowwater import LowWater
from agent.publish.session import MqttSession
from agent.publish.store import OutboxMessage, Store
from agent.publish.window import Window
from agent.util.worker import Worker

log = structlog.get_logger(__name__)

GW_CHECK_S = 0.5
"""How often the oldest row waiting for a gateway ack is looked up (with require_gateway_ack)."""
DELETE_FLUSH_ROWS = 64
DELETE_FLUSH_S = 0.025
"""PUBACKed rows are deleted in batches of this many, or after this long."""
LOW_REFRESH_S = 1.0
"""Shortest time between two reads of the low-water marks from the store (more when slow)."""
REFUSAL_LOG_S = 1.0


class GatewayAckWatch:
    """With require_gateway_ack: replay when the oldest row waiting for a gateway ack waited
    longer than the timeout.

    Timed per row, not per ack: acks for other streams keep coming while one stream has a
    hole the gateway will only fill (or skip) once it sees a replay.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.pending = 0  # hint: rows may wait for a gateway ack (checked, never trusted)
        self._oldest: int | None = None
        self._since = 0.0
        self._checked = 0.0

    def marked(self, n: int) -> None:
        """`n` rows were PUBACKed and now wait for a gateway ack."""
        self.pending += n

    def deleted(self, n: int) -> None:
        """A gateway ack deleted `n` rows."""
        self.pending = max(0, self.pending - n)

    def replay_due(self, now: float, store: Store) -> bool:
        """True when the oldest waiting row has not moved for `timeout_s`."""
        if self.pending <= 0 or now - self._checked < GW_CHECK_S:
            return False
        self._checked = now
        oldest = store.oldest_pubacked()
        if oldest is None:
            self.pending, self._oldest = 0, None
        elif oldest != self._oldest:
            self._oldest, self._since = oldest, now
        elif now - self._since > self.timeout_s:
            log.warning("publisher.gateway_ack_timeout", oldest_row=oldest)
            self._since = now
            return True
        return False


class DeliveryPump:
    """Moves messages from the hand-off queue to the broker through the store (one thread)."""

    def __init__(
        self,
        store: Store,
        session: MqttSession,
        cfg: OutboxConfig,
        queue_size: int,
        check_ack: Callable[[bytes], AckMessage],
    ) -> None:
        self.store = store
        self._session = session
        self._cfg = cfg
        self._check_ack = check_ack
        self._queue: queue.Queue[OutboxMessage] = queue.Queue(maxsize=queue_size)
        self._drop_lock = threading.Lock()
        self.queue_dropped = 0
        self.published = self.acked = self.rejected = self.acks_refused = 0
        # Pump-thread state (only the pump touches these).
        self._window = Window(cfg.inflight)
        self._gen: int | None = None  # the connection being published on; None: down
        self._to_delete: list[int] = []
        self._to_delete_since = 0.0
        self._gw = GatewayAckWatch(cfg.gateway_ack_timeout_s)
        self._low = LowWater()
        self._low.refresh(store.lowest_seqs())
        self._low_next = 0.0
        self._refusal_logged = 0.0
        self._worker = Worker("outbox-pump", self._main, wake=session.inbox.wake)
        self.on_round: Callable[[float], None] | None = None
        """Called at the end of each round with the monotonic time (WAL checkpoint hint)."""

    # -- other threads -------------------------------------------------------------------------
    def submit(self, msg: OutboxMessage) -> bool:
        """Hand a message over without blocking; False (counted) when full or stopping."""
        if not self._worker.stopping:
            try:
                self._queue.put_nowait(msg)
            except queue.Full:
                pass
            else:
                self._worker.wake()
                return True
        with self._drop_lock:
            self.queue_dropped += 1
        return False

    @property
    def queue_depth(self) -> int:
        """Messages waiting in the hand-off queue."""
        return self._queue.qsize()

    @property
    def inflight(self) -> int:
        """Messages published and not yet PUBACKed."""
        return len(self._window.inflight)

    def start(self) -> None:
        """Start the pump thread."""
        self._worker.start()

    def drain(self, seconds: float) -> None:
        """Let the pump commit everything queued and deliver while connected, up to `seconds`."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if self._queue.empty() and (self.store.count == 0 or not self._session.connected):
                return
            if self._cfg.require_gateway_ack and not self.inflight and self._queue.empty():
                return
            self._worker.wake()
            time.sleep(0.01)

    def stop(self, timeout: float) -> bool:
        """Run a last round (commits the whole queue into an Outbox) and stop; False when the
        thread did not finish within `timeout` (the store must then stay open)."""
        return self._worker.stop(max(0.1, timeout))

    # -- the pump thread -----------------------------------------------------------------------
    def _main(self) -> None:
        while True:
            busy = self._to_delete or self._session.inbox.events
            exiting = self._worker.rest(DELETE_FLUSH_S if busy else 0.1)
            try:
                self._round()
            except Exception as err:  # the pump must survive anything; it is logged loudly
                log.exception("publisher.pump_error", error=str(err))
                time.sleep(0.05)
            if exiting:
                return  # that last round committed the whole queue (Outbox) or what fits

    def _round(self) -> None:
        self._handle_events()
        now = time.monotonic()
        self._flush_deletes(now)
        self._ingest()
        if self._low.stale and now >= self._low_next:
            self._refresh_low(now)
        self._fill_window()
        if self._cfg.require_gateway_ack and self._gw.replay_due(now, self.store):
            self._replay(now)  # what is in flight stays in flight: its PUBACKs still count
            self._fill_window()
        if self.on_round is not None:
            self.on_round(now)

    def _handle_events(self) -> None:
        mark: list[int] = []
        events = self._session.inbox.events
        while events:
            ev = events.popleft()
            if isinstance(ev, Puback):
                self._on_puback(ev, mark)
            elif isinstance(ev, Connected):
                self._on_connected(ev.gen)
            elif isinstance(ev, Disconnected):
                self._gen = None
                self._window.reset()
            elif isinstance(ev, AckReceived):
                self._mark(mark)  # PUBACKs before this ack must count for it
                self._on_ack(ev.payload)
        self._mark(mark)

    def _on_connected(self, gen: int) -> None:
        if self._to_delete:  # acked before the reconnect: do not replay them
            self._delete_now()
        self._gen = gen
        self._window.reset()
        self._replay(time.monotonic())

    def _replay(self, now: float) -> None:
        """Publish again from the oldest stored row, with fresh low-water marks."""
        self._window.rewind()
        self._refresh_low(now)

    def _on_puback(self, ev: Puback, mark: list[int]) -> None:
        row_id = self._window.pubacked(ev.mid)
        if row_id is None:
            return  # from a previous connection: that row is replayed anyway
        if ev.failed:
            log.error("publisher.publish_rejected", row=row_id)
            self.rejected += 1
            self._to_delete.append(row_id)
        elif self._cfg.require_gateway_ack:
            mark.append(row_id)
        else:
            self._to_delete.append(row_id)

    def _mark(self, mark: list[int]) -> None:
        if mark:
            self.store.mark_pubacked(mark)
            self._gw.marked(len(mark))
            mark.clear()

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = self._check_ack(payload)
        except AckRefused as err:
            self.acks_refused += 1
            now = time.monotonic()
            if now - self._refusal_logged >= REFUSAL_LOG_S:
                self._refusal_logged = now
                log.warning(
                    "publisher.ack_refused",
                    reason=err.reason.value,
                    detail=err.detail,
                    refused_total=self.acks_refused,
                )
            return
        n = 0
        for e in ack.acks:
            n += self.store.delete_acked((e.boot_id, e.camera, e.stream.value), e.seq_upto)
        self.acked += n
        self._gw.deleted(n)
        if n:
            self._low.deleted()

    def _flush_deletes(self, now: float) -> None:
        """Deletes are batched (one transaction per DELETE_FLUSH_ROWS rows or DELETE_FLUSH_S):
        they are off the latency path, and a crash before the flush only means duplicates."""
        if not self._to_delete:
            return
        if not self._to_delete_since:
            self._to_delete_since = now
        if (
            len(self._to_delete) >= DELETE_FLUSH_ROWS
            or now - self._to_delete_since >= DELETE_FLUSH_S
            or self._worker.stopping
        ):
            self._delete_now()

    def _delete_now(self) -> None:
        self.acked += self.store.delete(self._to_delete)
        self._to_delete.clear()
        self._to_delete_since = 0.0
        self._low.deleted()

    def _refresh_low(self, now: float) -> None:
        t0 = time.monotonic()
        self._low.refresh(self.store.lowest_seqs())
        self._low_next = now + max(LOW_REFRESH_S, 20 * (time.monotonic() - t0))

    def _ingest(self) -> None:
        """Move queued messages into the store, one transaction per batch."""
        batch_max = self._cfg.batch_max
        while True:
            room = self.store.room()
            limit = batch_max if room is None else min(batch_max, room)
            batch: list[OutboxMessage] = []
            while len(batch) < limit:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            if self.store.append(batch):
                self._low.deleted()  # the caps dropped old rows
            appended = self.store.take_appended()
            self._low.appended(appended)
            self._window.appended(appended)
            if len(batch) < limit:
                return

    def _fill_window(self) -> None:
        """Publish rows after the cursor while connected and the window has room."""
        gen, window = self._gen, self._window
        publish, stamp = self._session.publish_row, self._low.stamp
        while gen is not None and window.room() > 0:
            rows = window.next_rows(self.store)
            if not rows:
                return
            for row in rows:
                mid = publish(gen, row.topic, stamp(row), row.qos)
                if mid is None:
                    return  # a disconnect or a new connection: wait for its event
                window.sent(mid, row)
                self.published += 1

    def counters(self) -> dict[str, Any]:
        """The pump's counters (cheap; any thread)."""
        return {
            "queue_depth": self._queue.qsize(),
            "queue_dropped": self.queue_dropped,
            "published": self.published,
            "acked": self.acked,
            "inflight": len(self._window.inflight),
            "rejected": self.rejected,
            "acks_refused": self.acks_refused,
        }
