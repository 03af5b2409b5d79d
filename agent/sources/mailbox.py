"""A camera's one-slot newest-frame mailbox: fps cap, drop/skip counters, delivered rate.

Pure bookkeeping (no threads, no clock of its own): the reader thread `offer`s each decoded
frame with the time it read it, the inference loop `take`s the newest one. Not thread-safe
on its own; `CameraReader` guards it with its lock.
"""

from __future__ import annotations

from collections import deque

from agent.types import Frame

FPS_WINDOW_S = 2.0
"""Delivered-frame rate is measured over this trailing window."""


class FrameMailbox:
    """Holds the newest frame of one camera and counts what happened to the others."""

    def __init__(self, fps_cap: float | None) -> None:
        """An empty mailbox; `fps_cap` (frames/s) paces what is offered, None for no cap."""
        self._cap_interval = None if fps_cap is None else 1.0 / fps_cap
        self._slot: Frame | None = None
        self._consumed = -1
        self._next_due: float | None = None
        self._times: deque[float] = deque(maxlen=256)
        self.index = -1
        """Index of the newest decoded frame (-1 before the first)."""
        self.last_read: float | None = None
        """Monotonic time the newest frame was decoded, or None before the first."""
        self.delivered = 0
        """Frames taken by the inference loop."""
        self.dropped = 0
        """Frames replaced in the slot before anyone took them."""
        self.skipped = 0
        """Frames decoded but not offered because of the fps cap."""

    def next_index(self, now: float) -> int:
        """Count a newly decoded frame read at `now`; return its index."""
        self.index += 1
        self.last_read = now
        return self.index

    def due(self, now: float) -> bool:
        """Whether the fps cap lets a frame decoded at `now` in (counts it as skipped if not)."""
        if self._cap_interval is None:
            return True
        if self._next_due is not None and now < self._next_due:
            self.skipped += 1
            return False
        if self._next_due is None or now - self._next_due > self._cap_interval:
            self._next_due = now
        self._next_due += self._cap_interval
        return True

    def put(self, frame: Frame, now: float) -> None:
        """Put `frame` in the slot, counting the frame it replaces as dropped if nobody took it."""
        if self._slot is not None and self._slot.index > self._consumed:
            self.dropped += 1
        self._slot = frame
        self._times.append(now)

    @property
    def pending(self) -> bool:
        """Whether the slot holds a frame nobody took yet."""
        return self._slot is not None and self._slot.index > self._consumed

    def take(self, after_index: int) -> Frame | None:
        """The newest frame if its index is greater than `after_index`, else None."""
        frame = self._slot
        if frame is None or frame.index <= after_index:
            return None
        if frame.index > self._consumed:
            self._consumed = frame.index
            self.delivered += 1
        return frame

    def restart_pacing(self) -> None:
        """Forget the fps cap's schedule (after a reconnect the next frame is due at once)."""
        self._next_due = None

    def fps(self, now: float) -> float:
        """Frames put in the slot per second over the last FPS_WINDOW_S (0 when fewer than 2)."""
        recent = [t for t in self._times if now - t <= FPS_WINDOW_S]
        if len(recent) >= 2 and recent[-1] > recent[0]:
            return (len(recent) - 1) / (recent[-1] - recent[0])
        return 0.0
