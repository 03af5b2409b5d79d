"""The detection archive: every detection message of the site, stored in SQLite, then acked.

With `archive.enabled` the gateway subscribes to `edge/+/cameras/+/detections` (QoS 1), writes
each valid message to `<data_dir>/detections.sqlite3` (WAL; one transaction per batch; the key
(device, camera, boot_id, source, seq) drops redeliveries) and, once a batch is committed, sends
each device the cumulative acks `AckTracker` allows on `edge/<device>/ack` (contiguous YOLO
seqs only; see agent/gateway/acks.py). Devices configured
with `outbox.require_gateway_ack` delete a message only then, so a broker crash between its
PUBACK and its persistence loses nothing (docs/delivery.md).

MQTT callbacks only enqueue; one writer thread owns the database. Rows older than
`retention_days` are deleted hourly.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import ValidationError

from agent.gateway.acks import AckDue, AckTracker
from agent.gateway.config import ArchiveConfig
from agent.messages.payloads import DetectionMessage
from agent.messages.topics import Topics
from agent.publish.ack import AckEntry, AckMessage

log = structlog.get_logger(__name__)

Publish = Callable[[str, bytes], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    device TEXT NOT NULL,
    camera TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,                -- capture time from the payload (RFC 3339)
    received REAL NOT NULL,          -- gateway clock, seconds since the epoch
    payload BLOB NOT NULL,           -- the message exactly as published
    PRIMARY KEY (device, camera, boot_id, source, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS detections_received ON detections (received);
CREATE TABLE IF NOT EXISTS acked (
    device TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    seq_upto INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (device, boot_id, camera)
) WITHOUT ROWID;
"""

_STOP = object()
RETENTION_EVERY_S = 3600.0
DROP_DISTRUST_S = 120.0
"""After a queue overflow, repeats are not taken as proof that a hole is gone for this long."""


@dataclass
class ArchiveStats:
    """Counters since start (for /v1/health)."""

    stored: int = 0  # new rows written
    duplicates: int = 0  # redeliveries already stored
    malformed: int = 0  # payloads that are not a valid DetectionMessage for their topic
    acks_sent: int = 0  # ack messages published
    queue_dropped: int = 0  # messages not queued (queue full); the device replays them
    gaps_skipped: int = 0  # seqs given up on: a device replay went past them


class DetectionArchive:
    """Queue, writer thread, acks. `on_message` is safe from paho's network thread."""

    def __init__(
        self,
        path: Path,
        cfg: ArchiveConfig,
        publish: Publish,
        *,
        prefix: str = "edge",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.cfg, self.publish, self.prefix, self.clock = (
            path,
            cfg,
            publish,
            prefix,
            clock,
        )
        self.stats = ArchiveStats()
        self.tracker = AckTracker()
        self._last_drop = -1e9  # monotonic time of the last queue overflow
        self._queue: queue.Queue[object] = queue.Queue(maxsize=cfg.queue_size)
        self._thread: threading.Thread | None = None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)  # acked streams are resumed from `acked` when seen again
        self._last_retention = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-archive", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self._db.close()

    def on_message(self, topic: str, payload: bytes) -> None:
        """Network-thread callback: queue, never block. A YOLO message not queued is not acked,
        so the device sends it again (a florence2 refinement may be lost: best effort)."""
        try:
            self._queue.put_nowait((topic, bytes(payload)))
        except queue.Full:
            self.stats.queue_dropped += 1
            self._last_drop = time.monotonic()

    # -- writer thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch: list[tuple[str, bytes]] = []
            try:
                item = self._queue.get(timeout=self.cfg.flush_interval_s)
            except queue.Empty:
                item = None
            stop = item is _STOP
            if isinstance(item, tuple):
                batch.append(item)
                while len(batch) < self.cfg.batch_max:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    assert isinstance(nxt, tuple)
                    batch.append(nxt)
            try:
                self._write(batch)
                self._send_acks()
                self._retention()
            except sqlite3.Error as err:  # disk full, I/O error: nothing acked, devices replay
                log.error("archive write failed; nothing acked", error=str(err), rows=len(batch))
            except Exception:  # noqa: BLE001 - a bug must not end the archive; logged with trace
                log.exception("archive batch failed; nothing acked", rows=len(batch))
            if stop:
                return

    def _write(self, batch: list[tuple[str, bytes]]) -> None:
        if not batch:
            return
        now = self.clock()
        rows: list[tuple[str, str, str, str, int, str, float, bytes]] = []
        for topic, payload in batch:
            parts = topic.split("/")
            try:
                msg = DetectionMessage.model_validate_json(payload)
                if (
                    len(parts) != 5
                    or parts[0] != self.prefix
                    or (parts[1], parts[3]) != (msg.device, msg.camera)
                ):
                    raise ValueError(f"payload {msg.device}/{msg.camera} on topic {topic}")
            except (ValidationError, ValueError) as err:
                self.stats.malformed += 1
                log.warning(
                    "malformed detection message ignored",
                    topic=topic,
                    error=str(err).splitlines()[0][:200],
                )
                continue
            rows.append(
                (msg.device, msg.camera, msg.boot_id, msg.source, msg.seq, msg.ts, now, payload)
            )
        if not rows:
            return
        before = self._db.total_changes
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO detections "
                "(device, camera, boot_id, source, seq, ts, received, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise
        new = self._db.total_changes - before
        self.stats.stored += new
        self.stats.duplicates += len(rows) - new
        mono = time.monotonic()
        evidence = mono - self._last_drop > DROP_DISTRUST_S
        for device, camera, boot_id, source, seq, *_ in rows:
            if source != "yolo":  # florence2 refinements carry an older frame's seq
                continue
            key = (device, boot_id, camera)
            if key not in self.tracker.streams:  # new, or forgotten while idle: resume its ack
                row = self._db.execute(
                    "SELECT seq_upto FROM acked WHERE device = ? AND boot_id = ? AND camera = ?",
                    key,
                ).fetchone()
                if row is not None:
                    self.tracker.resume(key, int(row[0]))
            self.tracker.stored(key, seq, mono, replay_evidence=evidence)

    def _send_acks(self) -> None:
        now = self.clock()
        due = self.tracker.due(time.monotonic())
        self.stats.gaps_skipped = self.tracker.gaps_skipped
        if not due:
            return
        # Autocommit (no BEGIN): a failure leaves no transaction open; marked sent only after.
        self._db.executemany(
            "INSERT INTO acked (device, boot_id, camera, seq_upto, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (device, boot_id, camera) DO UPDATE SET seq_upto = excluded.seq_upto, "
            "at = excluded.at",
            [(d.device, d.boot_id, d.camera, d.seq_upto, now) for d in due],
        )
        by_device: dict[str, list[AckDue]] = {}
        for d in due:
            by_device.setdefault(d.device, []).append(d)
        for device, entries in by_device.items():
            msg = AckMessage(
                device=device,
                acks=[
                    AckEntry(boot_id=e.boot_id, camera=e.camera, seq_upto=e.seq_upto)
                    for e in entries
                ],
            )
            self.publish(
                Topics(device, self.prefix).ack, msg.model_dump_json(by_alias=True).encode()
            )
            self.stats.acks_sent += 1
        self.tracker.sent(due)

    def _retention(self) -> None:
        now = self.clock()
        if now - self._last_retention < RETENTION_EVERY_S:
            return
        self._last_retention = now
        cutoff = now - self.cfg.retention_days * 86400
        cur = self._db.execute("DELETE FROM detections WHERE received < ?", (cutoff,))
        self._db.execute("DELETE FROM acked WHERE at < ?", (cutoff,))
        if cur.rowcount:
            log.info("archive retention", deleted=cur.rowcount, days=self.cfg.retention_days)
