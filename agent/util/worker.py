"""A worker thread that rests between rounds: start, wake early, stop and join, in one place."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Worker:
    """One daemon thread running `loop` until `stop`; an event wakes it from its rest early.

    `loop` rests with `rest(seconds)`, which returns True once `stop` was called, so a loop
    reads `while not worker.rest(interval): ...` and ends promptly.
    """

    def __init__(
        self, name: str, loop: Callable[[], None], wake: threading.Event | None = None
    ) -> None:
        """`wake`: an event that others set too (the publisher's inbox), else one of its own."""
        self.name = name
        self._loop = loop
        self._wake = wake or threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """`stop` was called: end the round at the next safe point."""
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """End the current rest now (any thread; cheap enough for a network callback)."""
        self._wake.set()

    def rest(self, seconds: float | None = None) -> bool:
        """Wait until woken, stopped or `seconds` passed (None: no limit); True when stopping."""
        self._wake.wait(seconds)
        self._wake.clear()
        return self._stopping.is_set()

    def stop(self, timeout: float) -> bool:
        """Ask the loop to end and wait for it up to `timeout` s; False if it still runs."""
        self._stopping.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
