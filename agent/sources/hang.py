"""Hung capture calls: which blocking call of a camera's thread runs since when, and which
threads were left behind because such a call never returned.

Pure bookkeeping (the reader passes the time in); not thread-safe on its own, `CameraReader`
guards it with its lock.
"""

from __future__ import annotations

import threading

from agent.sources.config import CameraConfig, RtspSourceConfig

MAX_ABANDONED = 2
"""Hung reader threads tolerated per camera before it stops starting new ones."""


def hang_limits(cfg: CameraConfig) -> dict[str, float]:
    """Seconds a blocked `open()` / `read()` may last before its thread is abandoned."""
    open_timeout = (
        cfg.source.open_timeout_s
        if isinstance(cfg.source, RtspSourceConfig)
        else cfg.stall_timeout_s
    )
    return {"open": open_timeout + cfg.stall_timeout_s, "read": 2.0 * cfg.stall_timeout_s}


class HangWatch:
    """The current blocking call of one camera's thread and the threads abandoned so far."""

    def __init__(self, limits: dict[str, float], max_abandoned: int = MAX_ABANDONED) -> None:
        """Watch calls named in `limits` (op -> seconds); tolerate `max_abandoned` hung threads."""
        self._limits = limits
        self._max = max_abandoned
        self._abandoned: list[threading.Thread] = []
        self._reported = False
        self.blocked: tuple[str, float] | None = None
        """(op, monotonic start) of the call the current thread is blocked in, or None."""

    def mark(self, op: str | None, now: float) -> None:
        """The current thread starts the blocking call `op` at `now` (None: its call returned)."""
        self.blocked = None if op is None else (op, now)

    def overdue(self, now: float) -> tuple[str, float] | None:
        """(op, seconds blocked) when the current call is past its limit, else None."""
        if self.blocked is None:
            return None
        op, since = self.blocked
        return (op, now - since) if now - since > self._limits[op] else None

    def still_hung(self) -> int:
        """How many abandoned threads are still blocked (forgets those that returned)."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        return len(self._abandoned)

    def saturated(self) -> bool:
        """Whether as many threads as tolerated are still hung (no new thread may start)."""
        return self.still_hung() >= self._max

    def first_report(self) -> bool:
        """True once per saturation: the caller reports it the first time only."""
        first = not self._reported
        self._reported = True
        return first

    def abandon(self, thread: threading.Thread | None) -> None:
        """Leave `thread` behind (blocked in its call); the next thread starts unblocked."""
        self._reported = False
        if thread is not None:
            self._abandoned.append(thread)
        self.blocked = None
