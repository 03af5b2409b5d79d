"""The on-disk outbox: detection messages live in SQLite (WAL) until their delivery is confirmed.

One `Outbox` is owned by one thread (the publisher's pump); it is not thread-safe except for
the read-only counters and `checkpoint()`. Rows are kept in commit order (`id`). The caps are
enforced on every append by dropping the oldest rows, which are counted; SQLITE_FULL / ENOSPC is
handled the same way and never raises.

Ids are explicit and strictly increasing for the life of an `Outbox` (the next id is kept in
memory, starting after the largest stored id), so a cursor "after id N" can never skip a newer
row even when the table empties; no AUTOINCREMENT, which would cost a page write per commit.

Checkpoints: with `autocheckpoint=False` SQLite never checkpoints inside a commit (that is
where the fsyncs are); the owner calls `checkpoint()` from another thread instead
(`Publisher` does), and `append` falls back to a checkpoint of its own only when the WAL has
grown past twice its budget.

Durability: `synchronous=NORMAL` in WAL mode means a committed transaction is in the WAL file
(the OS page cache) when `append` returns: it survives a crash or `kill -9` of the daemon; only a
power loss can lose the transactions since the last checkpoint. `synchronous=FULL` fsyncs every
commit and survives power loss too (docs/delivery.md compares the two).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from agent.publish.store import ROW_OVERHEAD, OutboxMessage, OutboxRow, StreamKey, row_of

__all__ = ["ROW_OVERHEAD", "Budget", "Outbox", "OutboxError", "OutboxMessage", "OutboxRow"]

log = structlog.get_logger(__name__)

PAGE_SIZE = 4096
DATA_FILL = 0.6
"""Share of the database pages the accounted row bytes may fill (b-tree slack, free pages)."""

LOW_SPACE_BYTES = 512 * 1024
"""Free space under which (plus twice the WAL) the outbox stops growing; see `_check_space`."""
SPACE_CHECK_EVERY = 16

_SQLITE_FULL = 13
_SQLITE_IOERR = 10

_SCHEMA = """
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
_ROW_COLUMNS = "id, topic, camera, boot_id, seq, qos, payload, stream"


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an outbox written by an older agent up to date: rows without a stream are
    `detections` (the only stream that existed), and the ack index covers the stream."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
    if "stream" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN stream TEXT NOT NULL DEFAULT 'detections'")
        log.info("outbox.migrated", added="stream")
    db.executescript(_INDEX)


_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class OutboxError(Exception):
    """The outbox file cannot be opened or is not an outbox; `corrupt` when its bytes are bad
    (not an SQLite database, or a damaged one), as opposed to a path that cannot be opened."""

    def __init__(self, message: str, corrupt: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt


def _is_corrupt(err: sqlite3.Error) -> bool:
    """True for SQLITE_CORRUPT and SQLITE_NOTADB: the file's content is not a usable database."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        text = str(err)
        return "not a database" in text or "malformed" in text
    return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


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


def _is_full(err: sqlite3.Error) -> bool:
    """True for SQLITE_FULL (disk or max_page_count full) and I/O errors such as ENOSPC."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return "full" in str(err) or "disk I/O" in str(err)
    return (code & 0xFF) in (_SQLITE_FULL, _SQLITE_IOERR)


class Outbox:
    """SQLite WAL outbox with row and byte caps (drop oldest, counted)."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        max_rows: int,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        autocheckpoint: bool = True,
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.budget = Budget.for_cap(max_bytes)
        self.dropped = 0
        """Rows dropped by this instance (caps, disk full) since it was opened."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(f"{path}: cannot switch to WAL mode (got {mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            auto = self.budget.wal_pages if autocheckpoint else 0
            self._db.execute(f"PRAGMA wal_autocheckpoint={auto}")
            self._db.execute(f"PRAGMA journal_size_limit={self.budget.wal_pages * PAGE_SIZE}")
            self._db.executescript(_SCHEMA)
            _migrate(self._db)
            self._db.execute(f"PRAGMA max_page_count={self.budget.max_page_count}")
            row = self._db.execute(
                "SELECT count(*), total(size), coalesce(max(id), 0) FROM outbox"
            ).fetchone()
        except sqlite3.DatabaseError as err:
            with contextlib.suppress(Exception):
                self._db.close()
            raise OutboxError(
                f"{path}: cannot open the outbox: {err}", corrupt=_is_corrupt(err)
            ) from None
        self._count = int(row[0])
        self._bytes = int(row[1])
        self._next_id = int(row[2]) + 1
        self._pending_drop = (0, 0, 0)
        self._last_drop_log = -1e9
        self._wal = Path(str(path) + "-wal")
        self._autocheckpoint = auto
        self._data_cap = self.budget.data_bytes
        self._low_space = False
        self._appends = 0
        self._appended: list[OutboxRow] = []
        self._ckpt_db: sqlite3.Connection | None = None
        if self._count:
            log.info("outbox.opened", path=str(path), rows=self._count, bytes=self._bytes)

    # -- counters -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Rows stored."""
        return self._count

    @property
    def bytes(self) -> int:
        """Accounted bytes stored (payload, topic, key and per-row overhead)."""
        return self._bytes

    def disk_bytes(self) -> int:
        """Size of the database and WAL files on disk."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total

    # -- writes ---------------------------------------------------------------------------
    def take_appended(self) -> list[OutboxRow]:
        """The rows the last `append` committed (in order), once; lets the caller publish them
        without reading them back."""
        rows, self._appended = self._appended, []
        return rows

    def _check_space(self) -> None:
        """Watch the free space of the outbox's file system (every SPACE_CHECK_EVERY appends).

        When it runs low, the byte cap is pinned at what is stored now (new rows then replace
        the oldest in place, the database stops growing), and the WAL is kept small and given
        back to the file system; both are undone when space comes back. This is what keeps
        "drop oldest" working on a disk filled by something else: once the disk is really full,
        SQLite cannot even write a delete.
        """
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        low = free < LOW_SPACE_BYTES + 2 * self.wal_bytes()
        if low and not self._low_space:
            self._low_space = True
            self._data_cap = min(self._data_cap, self._bytes)
            log.warning("outbox.low_disk_space", free=free, pinned_bytes=self._data_cap)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_autocheckpoint=16")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elif self._low_space and free > 2 * LOW_SPACE_BYTES + 2 * self._autocheckpoint * PAGE_SIZE:
            # Enough room for the WAL to grow back to its normal size, with a margin.
            self._low_space = False
            self._data_cap = self.budget.data_bytes
            log.info("outbox.disk_space_back", free=free)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute(f"PRAGMA wal_autocheckpoint={self._autocheckpoint}")

    def append(self, msgs: Sequence[OutboxMessage]) -> int:
        """Commit `msgs` in order, dropping the oldest rows to stay under the caps.

        Returns how many rows were dropped (old rows, or these messages themselves when the
        disk stays full). Never raises on a full disk.
        """
        self._appends += 1
        self._appended = []
        if self._low_space or self._appends % SPACE_CHECK_EVERY == 0:
            self._check_space()
        dropped_before = self.dropped
        chunk: list[OutboxMessage] = []
        chunk_bytes = 0
        limit = self.budget.wal_pages * PAGE_SIZE // 2
        for msg in msgs:
            if msg.size > self.budget.data_bytes:
                log.error("outbox.message_too_large", size=msg.size, cap=self.budget.data_bytes)
                self.dropped += 1
                continue
            if chunk and chunk_bytes + msg.size > limit:
                self._append_chunk(chunk)
                chunk, chunk_bytes = [], 0
            chunk.append(msg)
            chunk_bytes += msg.size
        if chunk:
            self._append_chunk(chunk)
        return self.dropped - dropped_before

    def _append_chunk(self, msgs: list[OutboxMessage]) -> None:
        size = sum(m.size for m in msgs)
        for attempt in range(3):
            # Make room (oldest first) and insert in one transaction: a crash between the two
            # cannot lose the room nor duplicate anything.
            over_rows = self._count + len(msgs) - self.max_rows
            over_bytes = self._bytes + size - self._data_cap
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if over_rows > 0 or over_bytes > 0:
                        # Hysteresis: free a few percent more so a full outbox does not pay
                        # a delete on every append.
                        self._drop_oldest(
                            over_rows + self.max_rows // 50 if over_rows > 0 else 0,
                            over_bytes + self._data_cap // 50 if over_bytes > 0 else 0,
                        )
                    first = self._next_id
                    self._db.executemany(
                        "INSERT INTO outbox (id, topic, camera, boot_id, seq, qos, size, payload, "
                        "stream) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                first + i,
                                m.topic,
                                m.camera,
                                m.boot_id,
                                m.seq,
                                m.qos,
                                m.size,
                                m.payload,
                                m.stream,
                            )
                            for i, m in enumerate(msgs)
                        ],
                    )
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    self._pending_drop = (0, 0, 0)
                    raise
            except sqlite3.Error as err:
                if not _is_full(err):
                    log.error("outbox.write_failed", error=str(err), rows=len(msgs))
                    break
                log.warning("outbox.full", error=str(err), attempt=attempt, rows=self._count)
                self._recover_full(max(size, self.budget.data_bytes // 20))
                continue
            self._appended.extend(row_of(first + i, m) for i, m in enumerate(msgs))
            self._next_id += len(msgs)
            n, freed, _ = self._pending_drop
            self._pending_drop = (0, 0, 0)
            if self.wal_bytes() > 2 * self.budget.wal_pages * PAGE_SIZE:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._count += len(msgs) - n
            self._bytes += size - freed
            self._count_dropped(n, freed)
            return
        self._count_dropped(len(msgs), size)
        log.error("outbox.dropping_new", rows=len(msgs), total_dropped=self.dropped)

    def _recover_full(self, need: int) -> None:
        """The disk (or max_page_count) is full: make room without growing any file.

        Shrink the WAL (checkpoint TRUNCATE gives its blocks back), pin the database at its
        current size (later inserts reuse free pages, or fail fast with SQLITE_FULL instead of
        hitting ENOSPC), delete the oldest rows, and checkpoint again so their pages are free.
        """
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
            if pages < self.budget.max_page_count:
                self._db.execute(f"PRAGMA max_page_count={pages}")
                log.warning("outbox.pinned_size", pages=pages, bytes=pages * PAGE_SIZE)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._drop_oldest(0, need)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._pending_drop = (0, 0, 0)
                raise
        except sqlite3.Error as err:
            log.error("outbox.cannot_make_room", error=str(err))
            return
        n, freed, _ = self._pending_drop
        self._pending_drop = (0, 0, 0)
        self._count -= n
        self._bytes -= freed
        self._count_dropped(n, freed)
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _count_dropped(self, rows: int, nbytes: int) -> None:
        if rows == 0:
            return
        self.dropped += rows
        t = time.monotonic()
        if t - self._last_drop_log >= 5.0:
            self._last_drop_log = t
            log.warning(
                "outbox.dropped_oldest", rows=rows, bytes=nbytes, total_dropped=self.dropped
            )

    def _drop_oldest(self, rows: int, nbytes: int) -> None:
        """Inside a transaction: delete the oldest rows until `rows` and `nbytes` are freed.

        The counters are only updated by the caller after COMMIT (`_pending_drop`).
        """
        last_id = n = freed = 0
        cur = self._db.execute("SELECT id, size FROM outbox ORDER BY id")
        for row_id, size in cur:
            if n >= rows and freed >= nbytes:
                break
            last_id, n, freed = row_id, n + 1, freed + size
        cur.close()
        if n:
            self._db.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))
        self._pending_drop = (n, freed, last_id)

    def delete(self, ids: Iterable[int]) -> int:
        """Delete delivered rows by id; returns how many existed."""
        return self._delete_where("id IN ({})", list(ids))

    def mark_pubacked(self, ids: Iterable[int]) -> None:
        """Flag rows the broker acknowledged, so a gateway ack may delete them."""
        id_list = list(ids)
        if not id_list:
            return
        try:
            for i in range(0, len(id_list), 500):
                part = id_list[i : i + 500]
                marks = ",".join("?" * len(part))
                self._db.execute(f"UPDATE outbox SET pubacked = 1 WHERE id IN ({marks})", part)
        except sqlite3.Error as err:
            log.error("outbox.mark_failed", error=str(err))

    def delete_acked(self, key: StreamKey, seq_upto: int) -> int:
        """Delete PUBACKed rows of stream `key` = (boot_id, camera, stream) with
        seq <= seq_upto (a gateway ack)."""
        try:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE boot_id = ? AND camera = ? AND stream = ? AND seq <= ? "
                "AND pubacked = 1 RETURNING size",
                (*key, seq_upto),
            )
            sizes = [r[0] for r in cur.fetchall()]
        except sqlite3.Error as err:
            log.error("outbox.delete_failed", error=str(err))
            return 0
        self._count -= len(sizes)
        self._bytes -= sum(sizes)
        return len(sizes)

    def _delete_where(self, clause: str, ids: list[int]) -> int:
        deleted = 0
        try:
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                marks = ",".join("?" * len(part))
                cur = self._db.execute(
                    f"DELETE FROM outbox WHERE {clause.format(marks)} RETURNING size", part
                )
                sizes = [r[0] for r in cur.fetchall()]
                deleted += len(sizes)
                self._count -= len(sizes)
                self._bytes -= sum(sizes)
        except sqlite3.Error as err:
            log.error("outbox.delete_failed", error=str(err))
        return deleted

    # -- reads ----------------------------------------------------------------------------
    def next_batch(self, after_id: int, limit: int) -> list[OutboxRow]:
        """The next `limit` rows with id > after_id, in commit order."""
        try:
            cur = self._db.execute(
                f"SELECT {_ROW_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            )
            return [OutboxRow(*r) for r in cur.fetchall()]
        except sqlite3.Error as err:
            log.error("outbox.read_failed", error=str(err))
            return []

    def lowest_seqs(self) -> dict[StreamKey, int]:
        """The lowest seq stored per stream (one pass over the table)."""
        try:
            cur = self._db.execute(
                "SELECT boot_id, camera, stream, min(seq) FROM outbox "
                "GROUP BY boot_id, camera, stream"
            )
            return {(b, c, st): int(low) for b, c, st, low in cur.fetchall()}
        except sqlite3.Error as err:
            log.error("outbox.read_failed", error=str(err))
            return {}

    def room(self) -> int | None:
        """No limit: the caps drop the oldest rows instead."""
        return None

    def oldest_pubacked(self) -> int | None:
        """Id of the oldest row the broker acknowledged that still waits for a gateway ack."""
        try:
            row = self._db.execute(
                "SELECT id FROM outbox WHERE pubacked = 1 ORDER BY id LIMIT 1"
            ).fetchone()
        except sqlite3.Error as err:
            log.error("outbox.read_failed", error=str(err))
            return None
        return None if row is None else int(row[0])

    def wal_bytes(self) -> int:
        """Current size of the WAL file."""
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    def wal_over_budget(self) -> bool:
        """True when the WAL has grown past its checkpoint threshold."""
        return self.wal_bytes() > self.budget.wal_pages * PAGE_SIZE

    def checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: never blocks the writer).

        Safe from one other thread (it uses its own connection); this is where the fsyncs of
        `synchronous=NORMAL` happen, off the publishing path.
        """
        try:
            if self._ckpt_db is None:
                self._ckpt_db = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
                )
            self._ckpt_db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as err:
            log.warning("outbox.checkpoint_failed", error=str(err))

    def close(self) -> None:
        """Checkpoint the WAL and close the database."""
        if self._ckpt_db is not None:
            self._ckpt_db.close()
            self._ckpt_db = None
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quarantine(path: Path, now: float) -> Path:
    """Move a corrupt outbox (and its -wal/-shm files) aside to `<path>.corrupt-<ts>`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("-wal", "-shm", ""):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    return aside


def open_outbox(
    path: Path,
    max_bytes: int,
    max_rows: int,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    autocheckpoint: bool = True,
) -> tuple[Outbox, Path | None]:
    """Open the outbox; a corrupt file is moved aside (logged) and a fresh one created.

    Returns the outbox and where a corrupt file went (None when there was none). Raises
    OutboxError when the path itself cannot be used (permissions, a directory, ...).
    """
    try:
        return Outbox(path, max_bytes, max_rows, synchronous, autocheckpoint), None
    except OutboxError as err:
        if not err.corrupt:
            raise
        aside = quarantine(path, time.time())
        log.error(
            "outbox.corrupt_moved_aside",
            path=str(path),
            moved_to=str(aside),
            error=str(err),
            note="the messages in the corrupt file are lost; a fresh outbox was created",
        )
    return Outbox(path, max_bytes, max_rows, synchronous, autocheckpoint), aside
