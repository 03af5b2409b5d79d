"""The SQLite side of the outbox: file format and migrations, how the disk cap is split, opening
with the right pragmas, transactions, dropping the oldest rows, and watching free space.

Used by `agent.publish.outbox.Outbox`; nothing here keeps counters of its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

log = structlog.get_logger(__name__)

PAGE_SIZE = 4096
DATA_FILL = 0.6
"""Share of the database pages the accounted row bytes may fill (b-tree slack, free pages)."""

LOW_SPACE_BYTES = 512 * 1024
"""Free space under which (plus twice the WAL) the outbox stops growing; see `SpaceGuard`."""

_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    camera TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    qos INTEGER NOT NULL,
    size INTEGER NOT NULL,
    pubacked INTEGER NOT NULL DEFAULT 0,
    payload BLOB NOT NULL,
    stream TEXT NOT NULL DEFAULT 'detections'
);
"""
# Only rows waiting for a gateway ack are indexed, so a plain insert touches one b-tree.
_INDEX = """
DROP INDEX IF EXISTS outbox_acked;
CREATE INDEX IF NOT EXISTS outbox_acked_stream ON outbox (boot_id, camera, stream, seq)
    WHERE pubacked = 1;
"""
ROW_COLUMNS = "id, topic, camera, boot_id, seq, qos, payload, stream"
INSERT = (
    "INSERT INTO outbox (id, topic, camera, boot_id, seq, qos, size, payload, stream) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class OutboxError(Exception):
    """The outbox file cannot be opened or is not an outbox; `corrupt` when its bytes are bad
    (not an SQLite database, or a damaged one), as opposed to a path that cannot be opened."""

    def __init__(self, message: str, corrupt: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt


def _code(err: sqlite3.Error) -> int | None:
    code = getattr(err, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_corrupt(err: sqlite3.Error) -> bool:
    """True for SQLITE_CORRUPT and SQLITE_NOTADB: the file's content is not a usable database."""
    code = _code(err)
    if code is None:
        return "not a database" in str(err) or "malformed" in str(err)
    return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def is_full(err: sqlite3.Error) -> bool:
    """True for SQLITE_FULL (disk or max_page_count full) and I/O errors such as ENOSPC."""
    code = _code(err)
    if code is None:
        return "full" in str(err) or "disk I/O" in str(err)
    return code in (_SQLITE_FULL, _SQLITE_IOERR)


@dataclass(frozen=True)
class Budget:
    """How `max_bytes` of disk is split between the database, its WAL and the row data."""

    wal_pages: int
    max_page_count: int
    data_bytes: int

    @classmethod
    def for_cap(cls, max_bytes: int) -> Budget:
        """Split a disk cap: a WAL of at most 2 x `wal_pages`, the rest for database pages."""
        pages = max_bytes // PAGE_SIZE
        wal_pages = max(2, min(1000, pages // 8))
        max_page_count = pages - 2 * wal_pages
        if max_page_count < 8:
            raise OutboxError(f"outbox max_bytes {max_bytes} is too small")
        return cls(wal_pages, max_page_count, int(max_page_count * PAGE_SIZE * DATA_FILL))


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an outbox written by an older agent up to date: rows without a stream are
    `detections` (the only stream that existed), and the ack index covers the stream."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
    if "stream" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN stream TEXT NOT NULL DEFAULT 'detections'")
        log.info("outbox.migrated", added="stream")
    db.executescript(_INDEX)


def open_db(
    path: Path,
    budget: Budget,
    synchronous: Literal["NORMAL", "FULL"],
    autocheckpoint_pages: int,
) -> tuple[sqlite3.Connection, tuple[int, int, int]]:
    """Open (or create, or migrate) the outbox database in WAL mode.

    Returns the connection and (rows, accounted bytes, largest id) stored. Raises OutboxError
    (`corrupt` when the file is not a usable database).
    """
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise OutboxError(f"{path}: cannot switch to WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint_pages}")
        db.execute(f"PRAGMA journal_size_limit={budget.wal_pages * PAGE_SIZE}")
        db.executescript(SCHEMA)
        _migrate(db)
        db.execute(f"PRAGMA max_page_count={budget.max_page_count}")
        row = db.execute(
            "SELECT count(*), total(size), coalesce(max(id), 0) FROM outbox"
        ).fetchone()
    except (sqlite3.DatabaseError, OutboxError) as err:
        if db is not None:
            db.close()
        if isinstance(err, OutboxError):
            raise
        raise OutboxError(
            f"{path}: cannot open the outbox: {err}", corrupt=is_corrupt(err)
        ) from None
    return db, (int(row[0]), int(row[1]), int(row[2]))


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back (and re-raised) on any SQLite error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def drop_oldest(db: sqlite3.Connection, rows: int, nbytes: int) -> tuple[int, int]:
    """Inside a transaction: delete the oldest rows until `rows` and `nbytes` are freed.

    Returns (rows deleted, accounted bytes freed); the caller counts them after COMMIT.
    """
    last_id = n = freed = 0
    cur = db.execute("SELECT id, size FROM outbox ORDER BY id")
    for row_id, size in cur:
        if n >= rows and freed >= nbytes:
            break
        last_id, n, freed = row_id, n + 1, freed + size
    cur.close()
    if n:
        db.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))
    return n, freed


def wal_checkpoint(db: sqlite3.Connection, mode: str) -> None:
    """Checkpoint the WAL (PASSIVE or TRUNCATE); a busy or failing checkpoint is harmless."""
    with contextlib.suppress(sqlite3.Error):
        db.execute(f"PRAGMA wal_checkpoint({mode})")


class SpaceGuard:
    """Watches the free space of the outbox's file system.

    When it runs low, the byte cap is pinned at what is stored now (new rows then replace the
    oldest in place, the database stops growing), and the WAL is kept small and given back to
    the file system; both are undone when space comes back. This is what keeps "drop oldest"
    working on a disk filled by something else: once the disk is really full, SQLite cannot
    even write a delete.
    """

    def __init__(self, db: sqlite3.Connection, directory: Path, budget: Budget, auto: int) -> None:
        self._db = db
        self._dir = directory
        self._budget = budget
        self._auto = auto
        self.low = False
        self.data_cap = budget.data_bytes
        """The byte cap rows may fill now (the budget's, or pinned while space is low)."""

    def check(self, stored_bytes: int, wal_bytes: int) -> None:
        """Look at the free space once and pin or release the cap."""
        try:
            st = os.statvfs(self._dir)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        if not self.low and free < LOW_SPACE_BYTES + 2 * wal_bytes:
            self.low = True
            self.data_cap = min(self.data_cap, stored_bytes)
            log.warning("outbox.low_disk_space", free=free, pinned_bytes=self.data_cap)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_autocheckpoint=16")
            wal_checkpoint(self._db, "TRUNCATE")
        elif self.low and free > 2 * LOW_SPACE_BYTES + 2 * self._auto * PAGE_SIZE:
            # Enough room for the WAL to grow back to its normal size, with a margin.
            self.low = False
            self.data_cap = self._budget.data_bytes
            log.info("outbox.disk_space_back", free=free)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute(f"PRAGMA wal_autocheckpoint={self._auto}")
