"""Camera lifecycle: an explicit enum state machine with exponential backoff and jitter.

Pure logic: no threads, no I/O. The clock and the random source are injected so tests
freeze time and seed the jitter.

```
            open ok + first frame              no frame for stall_timeout_s
 CONNECTING ───────────────────► STREAMING ──────────────────────────────► STALLED
     ▲   │ open/first read failed    │ read failed                 frame  │    │
     │   ▼                           ▼                        arrives ◄──┘    │ hung /
     └─ BACKOFF ◄─────────────────────────────────────────────────────────────┘ failed
 any state ──stop()──► STOPPED (terminal); STREAMING ──end of file, no loop──► STOPPED
```
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from enum import Enum

from agent.util.backoff import backoff_delay
from agent.util.transitions import check_transition


class CameraState(str, Enum):
    """Where one camera is in its lifecycle (published in the status topic)."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKOFF = "backoff"
    STOPPED = "stopped"


TRANSITIONS: dict[CameraState, frozenset[CameraState]] = {
    CameraState.CONNECTING: frozenset(
        {CameraState.STREAMING, CameraState.BACKOFF, CameraState.STOPPED}
    ),
    CameraState.STREAMING: frozenset(
        {CameraState.STALLED, CameraState.BACKOFF, CameraState.STOPPED}
    ),
    CameraState.STALLED: frozenset(
        {CameraState.STREAMING, CameraState.BACKOFF, CameraState.STOPPED}
    ),
    CameraState.BACKOFF: frozenset({CameraState.CONNECTING, CameraState.STOPPED}),
    CameraState.STOPPED: frozenset(),
}
"""Legal moves: state -> states it may go to. Anything else raises IllegalTransitionError."""


class CameraStateMachine:
    """The lifecycle of one camera: current state, when it was entered, last error, backoff.

    Not thread-safe on its own; the reader guards it with its lock.
    """

    def __init__(
        self,
        backoff_min_s: float,
        backoff_max_s: float,
        jitter: float = 0.5,
        reset_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """Create a machine in CONNECTING.

        Args:
            backoff_min_s: first reconnect delay.
            backoff_max_s: longest reconnect delay.
            jitter: fraction of each delay that is randomised (0: none, 1: full jitter).
            reset_after_s: streaming this long without a failure resets the backoff to
                `backoff_min_s`; defaults to `backoff_max_s`.
            clock: monotonic clock in seconds.
            rng: random source for the jitter.
        """
        # Validate once here so a bad config fails at construction, not at first failure.
        backoff_delay(0, backoff_min_s, backoff_max_s, jitter, random.Random(0))
        self._min = backoff_min_s
        self._max = backoff_max_s
        self._jitter = jitter
        self._reset_after = backoff_max_s if reset_after_s is None else reset_after_s
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._state = CameraState.CONNECTING
        self._since = clock()
        self._streaming_since: float | None = None
        self.attempt = 0
        """Failures since the last stable streaming period; the next backoff's exponent."""
        self.last_error: str | None = None
        """Why the camera last failed (kept after recovery, for the status topic)."""
        self.last_delay: float | None = None
        """The most recent backoff delay in seconds."""

    @property
    def state(self) -> CameraState:
        """The current state."""
        return self._state

    @property
    def since(self) -> float:
        """Monotonic time at which the current state was entered."""
        return self._since

    def can(self, new: CameraState) -> bool:
        """Whether moving to `new` is legal from the current state."""
        return new in TRANSITIONS[self._state]

    def transition(self, new: CameraState, error: str | None = None) -> None:
        """Move to `new`, recording `error` as the last error when given.

        Raises:
            IllegalTransitionError: the move is not in TRANSITIONS.
        """
        check_transition(TRANSITIONS, "camera", self._state, new)
        now = self._clock()
        if new is CameraState.STREAMING and self._streaming_since is None:
            self._streaming_since = now
        if new in (CameraState.BACKOFF, CameraState.STOPPED):
            if (
                self._streaming_since is not None
                and now - self._streaming_since >= self._reset_after
            ):
                self.attempt = 0
            self._streaming_since = None
        if error is not None:
            self.last_error = error
        self._state = new
        self._since = now

    def check_stall(self, frame_age_s: float | None, stall_timeout_s: float) -> bool:
        """Go STALLED if STREAMING with a newest frame older than `stall_timeout_s`; True if so."""
        if (
            self._state is not CameraState.STREAMING
            or frame_age_s is None
            or frame_age_s <= stall_timeout_s
        ):
            return False
        self.transition(
            CameraState.STALLED,
            f"no frame for {frame_age_s:.1f} s (stall_timeout_s={stall_timeout_s:g})",
        )
        return True

    def enter_backoff(self, error: str) -> float:
        """Go to BACKOFF because of `error`; return the delay before the next attempt."""
        self.transition(CameraState.BACKOFF, error)
        delay = backoff_delay(self.attempt, self._min, self._max, self._jitter, self._rng)
        self.attempt += 1
        self.last_delay = delay
        return delay
