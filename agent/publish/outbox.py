"""The on-disk outbox: messages live in SQLite (WAL) until their delivery is confirmed.

One `Outbox` is owned by one thread (the publisher's pump); it is not thread-safe except for
the read-only counters. Rows are kept in commit order (`id`) and belong to a stream
`(boot_id, camera, stream)`. The caps are enforced on every append by dropping the oldest rows,
which are counted; SQLITE_FULL / ENOSPC is handled the same way and never raises.

Ids are explicit and strictly increasing for the life of an `Outbox` (the next id is kept in
memory, starting after the largest stored id), so a cursor "after id N" can never skip a newer
row even when the table empties; no AUTOINCREMENT, which would cost a page write per commit.

Checkpoints: with `autocheckpoint=False` SQLite never checkpoints inside a commit (that is
where the fsyncs are); a `Checkpointer` thread does it on its own connection instead
(`agent.publish.checkpoint`), and `append` falls back to a checkpoint of its own only when the
WAL has grown past twice its budget.

Durability: `synchronous=NORMAL` in WAL mode means a committed transaction is in the WAL file
(the OS page cache) when `append` returns: it survives a crash or `kill -9` of the daemon; only a
power loss can lose the transactions since the last checkpoint. `synchronous=FULL` fsyncs every
commit and survives power loss too (docs/delivery.md compares the two).

A file that is not a usable SQLite database is moved aside by `open_outbox` (counted by the
caller, logged) and replaced by a fresh outbox, so a corrupt file never keeps a device down.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import structlog

from agent.publish.outbox_db import (
    INSERT,
    PAGE_SIZE,
    ROW_COLUMNS,
    Budget,
    OutboxError,
    SpaceGuard,
    drop_oldest,
    is_full,
    open_db,
    transaction,
    wal_checkpoint,
)
from agent.publish.store import ROW_OVERHEAD, OutboxMessage, OutboxRow, StreamKey, row_of

__all__ = [
    "ROW_OVERHEAD",
    "Budget",
    "Outbox",
    "OutboxError",
    "OutboxMessage",
    "OutboxRow",
    "open_outbox",
    "quarantine",
]

log = structlog.get_logger(__name__)

SPACE_CHECK_EVERY = 16
"""Appends between two looks at the free disk space (every append while it is low)."""


class Outbox:
    """SQLite WAL outbox with row and byte caps (drop oldest, counted); implements `Store`."""

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
        auto = self.budget.wal_pages if autocheckpoint else 0
        self._db, (self._count, self._bytes, max_id) = open_db(path, self.budget, synchronous, auto)
        self._next_id = max_id + 1
        self._last_drop_log = -1e9
        self._wal = Path(str(path) + "-wal")
        self._space = SpaceGuard(self._db, path.parent, self.budget, auto)
        self._appends = 0
        self._appended: list[OutboxRow] = []
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

    def room(self) -> int | None:
        """No limit: the caps drop the oldest rows instead."""
        return None

    def disk_bytes(self) -> int:
        """Size of the database and WAL files on disk."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total

    def wal_bytes(self) -> int:
        """Current size of the WAL file."""
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    def wal_over_budget(self) -> bool:
        """True when the WAL has grown past its checkpoint threshold."""
        return self.wal_bytes() > self.budget.wal_pages * PAGE_SIZE

    # -- writes ---------------------------------------------------------------------------
    def take_appended(self) -> list[OutboxRow]:
        """The rows the last `append` committed (in order), once; lets the caller publish them
        without reading them back."""
        rows, self._appended = self._appended, []
        return rows

    def append(self, msgs: Sequence[OutboxMessage]) -> int:
        """Commit `msgs` in order, dropping the oldest rows to stay under the caps.

        Returns how many rows were dropped (old rows, or these messages themselves when the
        disk stays full). Never raises on a full disk.
        """
        self._appends += 1
        self._appended = []
        if self._space.low or self._appends % SPACE_CHECK_EVERY == 0:
            self._space.check(self._bytes, self.wal_bytes())
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
        """Commit one chunk; on a full disk make room and retry, at most three times."""
        size = sum(m.size for m in msgs)
        for attempt in range(3):
            try:
                first, n, freed = self._insert(msgs, size)
            except sqlite3.Error as err:
                if not is_full(err):
                    log.error("outbox.write_failed", error=str(err), rows=len(msgs))
                    break
                log.warning("outbox.full", error=str(err), attempt=attempt, rows=self._count)
                self._recover_full(max(size, self.budget.data_bytes // 20))
                continue
            self._appended.extend(row_of(first + i, m) for i, m in enumerate(msgs))
            self._next_id += len(msgs)
            if self.wal_bytes() > 2 * self.budget.wal_pages * PAGE_SIZE:
                wal_checkpoint(self._db, "PASSIVE")
            self._count += len(msgs) - n
            self._bytes += size - freed
            self._count_dropped(n, freed)
            return
        self._count_dropped(len(msgs), size)
        log.error("outbox.dropping_new", rows=len(msgs), total_dropped=self.dropped)

    def _insert(self, msgs: list[OutboxMessage], size: int) -> tuple[int, int, int]:
        """Make room (oldest first) and insert in one transaction: a crash between the two
        cannot lose the room nor duplicate anything. Returns (first id, rows dropped, bytes
        freed); raises sqlite3.Error with nothing changed."""
        over_rows = self._count + len(msgs) - self.max_rows
        over_bytes = self._bytes + size - self._space.data_cap
        first = self._next_id
        n = freed = 0
        with transaction(self._db):
            if over_rows > 0 or over_bytes > 0:
                # Hysteresis: free a few percent more so a full outbox does not pay a delete
                # on every append.
                n, freed = drop_oldest(
                    self._db,
                    over_rows + self.max_rows // 50 if over_rows > 0 else 0,
                    over_bytes + self._space.data_cap // 50 if over_bytes > 0 else 0,
                )
            self._db.executemany(
                INSERT,
                [
                    (first + i, m.topic, m.camera, m.boot_id, m.seq, m.qos, m.size, m.payload,
                     m.stream)
                    for i, m in enumerate(msgs)
                ],
            )  # fmt: skip
        return first, n, freed

    def _recover_full(self, need: int) -> None:
        """The disk (or max_page_count) is full: make room without growing any file.

        Shrink the WAL (checkpoint TRUNCATE gives its blocks back), pin the database at its
        current size (later inserts reuse free pages, or fail fast with SQLITE_FULL instead of
        hitting ENOSPC), delete the oldest rows, and checkpoint again so their pages are free.
        """
        wal_checkpoint(self._db, "TRUNCATE")
        with contextlib.suppress(sqlite3.Error):
            pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
            if pages < self.budget.max_page_count:
                self._db.execute(f"PRAGMA max_page_count={pages}")
                log.warning("outbox.pinned_size", pages=pages, bytes=pages * PAGE_SIZE)
        try:
            with transaction(self._db):
                n, freed = drop_oldest(self._db, 0, need)
        except sqlite3.Error as err:
            log.error("outbox.cannot_make_room", error=str(err))
            return
        self._count -= n
        self._bytes -= freed
        self._count_dropped(n, freed)
        wal_checkpoint(self._db, "TRUNCATE")

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

    def delete(self, ids: Iterable[int]) -> int:
        """Delete delivered rows by id; returns how many existed."""
        deleted = 0
        id_list = list(ids)
        try:
            for i in range(0, len(id_list), 500):
                part = id_list[i : i + 500]
                marks = ",".join("?" * len(part))
                sql = f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING size"
                deleted += self._forget(self._db.execute(sql, part).fetchall())
        except sqlite3.Error as err:
            log.error("outbox.delete_failed", error=str(err))
        return deleted

    def _forget(self, sizes: list[tuple[int]]) -> int:
        """Account for deleted rows (their sizes, as RETURNING gives them)."""
        self._count -= len(sizes)
        self._bytes -= sum(s for (s,) in sizes)
        return len(sizes)

    def mark_pubacked(self, ids: Iterable[int]) -> None:
        """Flag rows the broker acknowledged, so a gateway ack may delete them."""
        id_list = list(ids)
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
        sql = (
            "DELETE FROM outbox WHERE boot_id = ? AND camera = ? AND stream = ? AND seq <= ? "
            "AND pubacked = 1 RETURNING size"
        )
        try:
            return self._forget(self._db.execute(sql, (*key, seq_upto)).fetchall())
        except sqlite3.Error as err:
            log.error("outbox.delete_failed", error=str(err))
            return 0

    # -- reads ----------------------------------------------------------------------------
    def next_batch(self, after_id: int, limit: int) -> list[OutboxRow]:
        """The next `limit` rows with id > after_id, in commit order."""
        sql = f"SELECT {ROW_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?"
        try:
            rows = self._db.execute(sql, (after_id, limit)).fetchall()
            return [OutboxRow(*message, id=row_id) for row_id, *message in rows]
        except sqlite3.Error as err:
            log.error("outbox.read_failed", error=str(err))
            return []

    def lowest_seqs(self) -> dict[StreamKey, int]:
        """The lowest seq stored per stream (one pass over the table)."""
        sql = "SELECT boot_id, camera, stream, min(seq) FROM outbox GROUP BY 1, 2, 3"
        try:
            return {(b, c, st): int(low) for b, c, st, low in self._db.execute(sql).fetchall()}
        except sqlite3.Error as err:
            log.error("outbox.read_failed", error=str(err))
            return {}

    def oldest_pubacked(self) -> int | None:
        """Id of the oldest row the broker acknowledged that still waits for a gateway ack."""
        sql = "SELECT id FROM outbox WHERE pubacked = 1 ORDER BY id LIMIT 1"
        try:
            row = self._db.execute(sql).fetchone()
        except sqlite3.Error as err:
            log.error("outbox.read_failed", error=str(err))
            return None
        return None if row is None else int(row[0])

    def close(self) -> None:
        """Checkpoint the WAL and close the database."""
        wal_checkpoint(self._db, "TRUNCATE")
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
