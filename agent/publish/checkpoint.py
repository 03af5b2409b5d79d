"""WAL checkpoints of the on-disk outbox, off the publishing path (their own thread)."""

from __future__ import annotations

import threading

from agent.publish.outbox import Outbox

CHECKPOINT_EVERY_S = 2.0


class Checkpointer:
    """Checkpoints `outbox`'s WAL when asked (`poke`, the WAL passed its budget) or every 2 s."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
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
        while not self._exit.is_set():
            self._wake.wait(CHECKPOINT_EVERY_S)
            self._wake.clear()
            if not self._exit.is_set():
                self._outbox.checkpoint()
