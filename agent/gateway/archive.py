"""The detection archive: every detection message of the site, stored durably, then acked.

With `archive.enabled` the gateway subscribes to `edge/+/cameras/+/detections` and
`edge/+/cameras/+/events` (QoS 1), checks each message (valid `edge.detections/1` or
`edge.event/1` for its topic, from an enrolled device), writes it to
`<data_dir>/detections.sqlite3` (`ArchiveDb`: WAL, fsynced per batch; the key
(device, camera, boot_id, stream, seq) drops redeliveries) and then sends each device the
signed, per-stream cumulative acks that `AckTracker` allows on `edge/<device>/ack`
(`edge.ack/2`). Devices configured with `outbox.require_gateway_ack` delete a message only then,
so a broker crash between its PUBACK and its persistence loses nothing (docs/delivery.md).

MQTT callbacks only enqueue; one writer thread owns the database. One device's bad message or
failed ack never holds back another's: messages are checked one by one, acks are built and
published per device, each in its own error boundary.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import structlog
from pydantic import ValidationError

from agent.contracts.ack import AckEntry, AckMessage
from agent.contracts.events import EventMessage
from agent.contracts.payloads import DetectionMessage
from agent.contracts.streams import Stream
from agent.contracts.topics import Topics
from agent.gateway.acks import AckDue, AckTracker
from agent.gateway.archive_store import ArchiveDb, ArchivedRow
from agent.gateway.config import ArchiveConfig

log = structlog.get_logger(__name__)

Publish = Callable[[str, bytes], None]
Signer = Callable[[AckMessage], AckMessage]
IsEnrolled = Callable[[str], bool]

_STOP = object()
RETENTION_EVERY_S = 3600.0
PRUNE_CHUNK = 1000


@dataclass
class ArchiveStats:
    """Counters since start (for /v1/health)."""

    stored: int = 0  # new rows written
    duplicates: int = 0  # redeliveries already stored
    malformed: int = 0  # payloads that are not a valid DetectionMessage for their topic
    unknown_device: int = 0  # messages from a device the gateway has not enrolled
    acks_sent: int = 0  # ack messages published
    ack_failures: int = 0  # acks of one device that could not be built or published
    queue_dropped: int = 0  # messages not queued (queue full); the device replays them
    gaps_skipped: int = 0  # seqs below a device's low-water mark that never arrived
    streams_evicted: int = 0  # streams forgotten: their device had too many open
    holes_expired: int = 0  # streams forgotten: a hole made no progress for too long
    pruned: int = 0  # rows deleted to keep the file under archive.max_bytes


class MessageRefused(ValueError):
    """A message the archive does not store (malformed, or for another topic)."""


def parse_detection(topic: str, payload: bytes, prefix: str) -> ArchivedRow:
    """Check one received message (a detection message, or an event on an `events` topic)
    against its topic; raise MessageRefused."""
    parts = topic.split("/")
    model: type[DetectionMessage] | type[EventMessage] = (
        EventMessage if topic.endswith("/events") else DetectionMessage
    )
    try:
        msg = model.model_validate_json(payload)
    except ValidationError as err:
        raise MessageRefused(str(err).splitlines()[0][:200]) from None
    if len(parts) != 5 or parts[0] != prefix or (parts[1], parts[3]) != (msg.device, msg.camera):
        raise MessageRefused(f"payload {msg.device}/{msg.camera} on topic {topic}")
    return ArchivedRow(
        device=msg.device,
        camera=msg.camera,
        boot_id=msg.boot_id,
        stream=Stream(msg.stream).value,
        seq=msg.seq,
        ts=msg.ts,
        payload=payload,
        low_water=msg.oldest_unacked_seq,
    )


def build_ack(device: str, entries: list[AckDue], signer: Signer) -> AckMessage:
    """The signed `edge.ack/2` message for one device's due acks."""
    now = datetime.now(timezone.utc)
    msg = AckMessage(
        device=device,
        issued=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        acks=[
            AckEntry(boot_id=e.boot_id, camera=e.camera, stream=e.stream, seq_upto=e.seq_upto)
            for e in entries
        ],
    )
    return signer(msg)


class DetectionArchive:
    """Queue, writer thread, acks. `on_message` is safe from paho's network thread."""

    def __init__(
        self,
        path: Path,
        cfg: ArchiveConfig,
        publish: Publish,
        *,
        signer: Signer,
        is_enrolled: IsEnrolled,
        prefix: str = "edge",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg, self.publish, self.prefix, self.clock = cfg, publish, prefix, clock
        self.signer, self.is_enrolled = signer, is_enrolled
        self.stats = ArchiveStats()
        self.tracker = AckTracker(
            max_streams_per_device=cfg.max_streams_per_device, hole_expiry_s=cfg.hole_expiry_s
        )
        self._queue: queue.Queue[object] = queue.Queue(maxsize=cfg.queue_size)
        self._thread: threading.Thread | None = None
        self.db = ArchiveDb(path)
        self._last_retention = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-archive", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self.db.close()

    def on_message(self, topic: str, payload: bytes) -> None:
        """Network-thread callback: queue, never block. A message not queued is not acked, so
        the device sends it again."""
        try:
            self._queue.put_nowait((topic, bytes(payload)))
        except queue.Full:
            self.stats.queue_dropped += 1

    # -- writer thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            written = (0, 0)
            try:
                written = self._write(batch)
                self._retention()
            except Exception:  # noqa: BLE001 - disk full, I/O error or a bug: nothing is acked,
                # devices replay; logged with its trace and the writer goes on
                log.exception("archive batch failed; nothing acked", rows=len(batch))
            else:
                self._send_acks()
            self._publish_stats(*written)
            if stop:
                return

    def _next_batch(self) -> tuple[list[tuple[str, bytes]], bool]:
        batch: list[tuple[str, bytes]] = []
        try:
            item = self._queue.get(timeout=self.cfg.flush_interval_s)
        except queue.Empty:
            return batch, False
        while item is not _STOP:
            assert isinstance(item, tuple)
            batch.append(item)
            if len(batch) >= self.cfg.batch_max:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _accept(self, topic: str, payload: bytes) -> ArchivedRow | None:
        try:
            row = parse_detection(topic, payload, self.prefix)
        except MessageRefused as err:
            self.stats.malformed += 1
            log.warning("malformed detection message ignored", topic=topic, error=str(err))
            return None
        if not self.is_enrolled(row.device):
            self.stats.unknown_device += 1
            log.warning("detection from a device not enrolled ignored", device=row.device)
            return None
        return row

    def _publish_stats(self, stored: int, duplicates: int) -> None:
        """Once a batch is fully handled (stored, pruned, acked): a reader of `stats` never sees
        a batch counted as stored whose size cap or stream bookkeeping is still to come."""
        c = self.tracker.counters
        self.stats.gaps_skipped = c.gaps_skipped
        self.stats.streams_evicted, self.stats.holes_expired = c.streams_evicted, c.holes_expired
        self.stats.duplicates += duplicates
        self.stats.stored += stored

    def _write(self, batch: list[tuple[str, bytes]]) -> tuple[int, int]:
        """Store a batch; return (new rows, duplicates)."""
        rows = [r for r in (self._accept(t, p) for t, p in batch) if r is not None]
        if not rows:
            return 0, 0
        new = self.db.insert(rows, self.clock())
        mono = time.monotonic()
        for r in rows:
            if not self.tracker.knows(r.stream_key):  # new, or forgotten: resume its last ack
                last = self.db.last_ack(r.stream_key)
                if last is not None:
                    self.tracker.resume(r.stream_key, last, mono)
            self.tracker.stored(r.stream_key, r.seq, r.low_water, mono)
        return new, len(rows) - new

    def _send_acks(self) -> None:
        due = self.tracker.due(time.monotonic())
        by_device: dict[str, list[AckDue]] = {}
        for d in due:
            by_device.setdefault(d.device, []).append(d)
        for device, entries in by_device.items():
            try:
                self._ack_device(device, entries)
            except Exception:  # noqa: BLE001 - one device's ack must not stop the fleet's
                self.stats.ack_failures += 1
                log.exception("ack for one device failed; offered again next batch", device=device)

    def _ack_device(self, device: str, entries: list[AckDue]) -> None:
        msg = build_ack(device, entries, self.signer)
        now = self.clock()
        for e in entries:
            self.db.record_ack(e.key, e.seq_upto, now)
        self.publish(Topics(device, self.prefix).ack, msg.model_dump_json(by_alias=True).encode())
        self.stats.acks_sent += 1
        for e in entries:
            self.tracker.sent(e)

    def _retention(self) -> None:
        now = self.clock()
        if now - self._last_retention >= RETENTION_EVERY_S:
            self._last_retention = now
            deleted = self.db.delete_older_than(now - self.cfg.retention_days * 86400)
            if deleted:
                log.info("archive retention", deleted=deleted, days=self.cfg.retention_days)
        self._enforce_size_cap()

    def _enforce_size_cap(self) -> None:
        before = self.stats.pruned
        while self.db.size_bytes() > self.cfg.max_bytes:
            # a tenth of the rows at a time at most: a fixed chunk could empty a small archive
            pruned = self.db.prune_oldest(max(1, min(PRUNE_CHUNK, self.db.count() // 10)))
            self.stats.pruned += pruned
            if not pruned:
                break
        if self.stats.pruned > before:
            log.warning(
                "archive over its size cap: oldest rows pruned",
                pruned=self.stats.pruned - before,
                max_bytes=self.cfg.max_bytes,
            )
