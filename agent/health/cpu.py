"""CPU cost per frame: the process's CPU time (every thread, user + system) spent between two
health reports, divided by the frames inferred in the same interval.

It counts what the device pays for a frame: decode, pre-processing, the engine's threads
(spin-waiting included), post-processing, tracking and publishing.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def cpu_ms_per_frame(cpu_s: float, frames: int) -> float | None:
    """CPU milliseconds per frame; None when no frame was inferred (pure)."""
    if frames <= 0:
        return None
    return max(cpu_s, 0.0) * 1000.0 / frames


class CpuPerFrame:
    """Process CPU time per inferred frame between two `sample` calls."""

    def __init__(self, frames: int, cpu_time: Callable[[], float] = time.process_time) -> None:
        """Start measuring now, with `frames` inferred so far; `cpu_time` is the process's
        CPU clock in seconds (injected by tests)."""
        self._cpu_time = cpu_time
        self._cpu = cpu_time()
        self._frames = frames

    def sample(self, frames: int) -> float | None:
        """CPU ms per frame since the previous sample, given the total `frames` inferred now."""
        cpu = self._cpu_time()
        out = cpu_ms_per_frame(cpu - self._cpu, frames - self._frames)
        self._cpu, self._frames = cpu, frames
        return out
