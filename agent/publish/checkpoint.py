"""WAL checkpoints of the on-disk outbox, off the publishing path (their own thread and
connection): this is where the fsyncs of `synchronous=NORMAL` happen."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

CHECKPOINT_EVERY_S = 2.0


class Checkpointer:
    """Checkpoints the outbox at `path` when asked (`poke`: the WAL passed its budget) or
    every 2 s, PASSIVE (never blocks the writer), on a connection of its own."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wake = threading.Event()
        self._exit = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the checkpoint thread."""
        self._thread = threading.Thread(target=self._main, name="outbox-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Checkpoint soon."""
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread (the outbox's own close does the final checkpoint)."""
        self._exit.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while not self._exit.is_set():
                self._wake.wait(CHECKPOINT_EVERY_S)
                self._wake.clear()
                if self._exit.is_set():
                    return
                try:
                    if db is None:
                        db = sqlite3.connect(str(self._path), isolation_level=None, timeout=5.0)
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as err:
                    log.warning("outbox.checkpoint_failed", error=str(err))
        finally:
            if db is not None:
                db.close()
