"""WAL checkpoints of the on-disk outbox, off the publishing path (their own thread and
connection): this is where the fsyncs of `synchronous=NORMAL` happen."""

from __future__ import annotations

import sqlite3

import structlog

from agent.publish.outbox import Outbox
from agent.util.worker import Worker

log = structlog.get_logger(__name__)

CHECKPOINT_EVERY_S = 2.0
WAL_LOOK_S = 0.1
"""Shortest time between two looks at the WAL size from the pump (`on_round`)."""


class Checkpointer:
    """Checkpoints `outbox` when its WAL passed its budget (seen by `on_round`) or every 2 s,
    PASSIVE (never blocks the writer), on a connection of its own."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._path = outbox.path
        self._looked = 0.0
        self._worker = Worker("outbox-checkpoint", self._main)

    def start(self) -> None:
        """Start the checkpoint thread."""
        self._worker.start()

    def on_round(self, now: float) -> None:
        """The pump's end-of-round hook: ask for a checkpoint once the WAL passed its budget."""
        if now - self._looked >= WAL_LOOK_S:
            self._looked = now
            if self._outbox.wal_over_budget():
                self._worker.wake()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread (the outbox's own close does the final checkpoint)."""
        self._worker.stop(timeout)

    def _main(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while not self._worker.rest(CHECKPOINT_EVERY_S):
                try:
                    if db is None:
                        db = sqlite3.connect(str(self._path), isolation_level=None, timeout=5.0)
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as err:
                    log.warning("outbox.checkpoint_failed", error=str(err))
        finally:
            if db is not None:
                db.close()
