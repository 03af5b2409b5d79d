"""The detection archive's SQLite file: rows per stream, the acks sent, retention and a size cap.

Durable before acked: the file runs in WAL mode with `synchronous=FULL`, so a committed batch is
fsynced before the archive sends any ack that covers it (an ack means *durably stored*). One
writer thread owns the connection.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    device TEXT NOT NULL,
    camera TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    stream TEXT NOT NULL,            -- detections | events | florence2
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,                -- capture time from the payload (RFC 3339)
    received REAL NOT NULL,          -- gateway clock, seconds since the epoch
    payload BLOB NOT NULL,           -- the message exactly as published
    PRIMARY KEY (device, camera, boot_id, stream, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS detections_received ON detections (received);
CREATE TABLE IF NOT EXISTS acked (
    device TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq_upto INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (device, boot_id, camera, stream)
) WITHOUT ROWID;
"""

# An archive written before streams existed: rows keyed by `source`, acks per camera.
MIGRATE_V1 = """
ALTER TABLE detections RENAME TO detections_v1;
ALTER TABLE acked RENAME TO acked_v1;
DROP INDEX IF EXISTS detections_received;
{schema}
INSERT OR IGNORE INTO detections
    SELECT device, camera, boot_id,
           CASE source WHEN 'florence2' THEN 'florence2' ELSE 'detections' END,
           seq, ts, received, payload FROM detections_v1;
INSERT OR IGNORE INTO acked
    SELECT device, boot_id, camera, 'detections', seq_upto, at FROM acked_v1;
DROP TABLE detections_v1;
DROP TABLE acked_v1;
"""


@dataclass(frozen=True)
class ArchivedRow:
    """One message to store, keyed by its stream and seq."""

    device: str
    camera: str
    boot_id: str
    stream: str
    seq: int
    ts: str
    payload: bytes
    low_water: int | None  # the device's oldest_unacked_seq for the stream (not stored)

    @property
    def stream_key(self) -> tuple[str, str, str, str]:
        """(device, boot_id, camera, stream), the ack tracker's key."""
        return (self.device, self.boot_id, self.camera, self.stream)


class ArchiveDb:
    """SQLite access of the archive (a single writer thread uses it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(detections)")}
        if columns and "stream" not in columns:
            log.info("archive: migrating to per-stream keys", path=str(path))
            self._db.executescript("BEGIN;" + MIGRATE_V1.format(schema=SCHEMA) + "COMMIT;")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def insert(self, rows: list[ArchivedRow], received: float) -> int:
        """Store `rows` in one fsynced transaction; return how many were new."""
        before = self._db.total_changes
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO detections "
                "(device, camera, boot_id, stream, seq, ts, received, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.device, r.camera, r.boot_id, r.stream, r.seq, r.ts, received, r.payload)
                    for r in rows
                ],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise
        return self._db.total_changes - before

    def last_ack(self, key: tuple[str, str, str, str]) -> int | None:
        """The seq_upto last sent for stream `key`, if any."""
        row = self._db.execute(
            "SELECT seq_upto FROM acked WHERE device = ? AND boot_id = ? AND camera = ? "
            "AND stream = ?",
            key,
        ).fetchone()
        return None if row is None else int(row[0])

    def record_ack(self, key: tuple[str, str, str, str], seq_upto: int, at: float) -> None:
        """Remember the ack sent for `key` (autocommit: no transaction is left open)."""
        self._db.execute(
            "INSERT INTO acked (device, boot_id, camera, stream, seq_upto, at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device, boot_id, camera, stream) "
            "DO UPDATE SET seq_upto = excluded.seq_upto, at = excluded.at",
            (*key, seq_upto, at),
        )

    def delete_older_than(self, cutoff: float) -> int:
        """Retention: drop rows and ack records older than `cutoff` (epoch seconds)."""
        cur = self._db.execute("DELETE FROM detections WHERE received < ?", (cutoff,))
        self._db.execute("DELETE FROM acked WHERE at < ?", (cutoff,))
        return cur.rowcount

    def size_bytes(self) -> int:
        """Bytes the database pages take (free pages excluded)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def count(self) -> int:
        """Stored messages."""
        return int(self._db.execute("SELECT COUNT(*) FROM detections").fetchone()[0])

    def prune_oldest(self, rows: int) -> int:
        """Delete the `rows` oldest stored messages (by arrival); return how many went."""
        cur = self._db.execute(
            "DELETE FROM detections WHERE (device, camera, boot_id, stream, seq) IN "
            "(SELECT device, camera, boot_id, stream, seq FROM detections "
            "ORDER BY received LIMIT ?)",
            (rows,),
        )
        return cur.rowcount
