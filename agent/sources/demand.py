"""Decode on demand for file cameras: the reader thread sleeps after putting a frame until the
inference loop took it, so no frame is decoded only to be dropped and, with `every_frame`, none
is dropped at all. A non-looping `every_frame` file is a job: it is `finished` once its last
frame was taken.

Not thread-safe on its own: `CameraReader` calls every method with its lock held (the
condition shares that lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.sources.config import FileSourceConfig, SourceConfig
from agent.sources.mailbox import FrameMailbox


class DemandGate:
    """The backpressure state of one camera reader."""

    def __init__(self, source: SourceConfig, lock: threading.Lock) -> None:
        """A gate for `source` sharing the reader's `lock`; inactive unless `source` is a file
        with `pace: false` or `every_frame: true`."""
        file = source if isinstance(source, FileSourceConfig) else None
        self.active = file is not None and (file.every_frame or not file.pace)
        self.job = file is not None and file.every_frame and not file.loop
        self._taken = threading.Condition(lock)
        self._held = False
        self._released: float | None = None
        self.ended = False
        """The file reached its end (loop: false)."""

    def notify(self) -> None:
        """A frame was taken, or the reader is stopping: wake the waiting thread."""
        if self.active:
            self._taken.notify_all()

    def wait(
        self, mailbox: FrameMailbox, current: Callable[[], bool], now: Callable[[], float]
    ) -> None:
        """Sleep until the loop took the frame in `mailbox`, or `current()` turns False (the
        thread must exit)."""
        self._held = True
        try:
            self._taken.wait_for(lambda: not current() or not mailbox.pending)
        finally:
            self._held = False
            self._released = now()

    def stall_age(self, now: float, last_read: float | None) -> float | None:
        """Seconds that count towards a stall: none while the thread waits for the loop to
        take its frame, and counted from the end of that wait."""
        if self._held or last_read is None:
            return None
        if self._released is not None:
            last_read = max(last_read, self._released)
        return now - last_read

    def finished(self, pending: bool) -> bool:
        """Whether this camera is a job played to its end whose last frame was taken."""
        return self.job and self.ended and not pending
