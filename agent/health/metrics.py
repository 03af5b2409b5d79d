"""In-process metrics of the inference loop: counters, latency percentiles, a time window.

Pure bookkeeping (no I/O): the daemon turns a snapshot into the `health` payload and,
when configured, into Prometheus metrics (`agent.health.prometheus`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameRecord:
    """What the loop recorded for one frame (or one failed inference)."""

    mono: float
    latency_ms: float
    detections: int
    frame_age_ms: float
    error: bool = False


@dataclass(frozen=True)
class WindowSummary:
    """Aggregate of the frame records inside a time window."""

    frames: int
    errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    detections_per_frame: float | None
    frame_age_p95_ms: float | None
    fps: float


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


class FrameWindow:
    """Thread-safe record of recent frames, bounded by age and count."""

    def __init__(self, horizon_s: float = 600.0, max_records: int = 100_000) -> None:
        self._horizon = horizon_s
        self._records: deque[FrameRecord] = deque(maxlen=max_records)
        self._lock = threading.Lock()
        self.total_frames = 0
        self.total_errors = 0

    def add(self, record: FrameRecord) -> None:
        with self._lock:
            self._records.append(record)
            if record.error:
                self.total_errors += 1
            else:
                self.total_frames += 1
            cutoff = record.mono - self._horizon
            while self._records and self._records[0].mono < cutoff:
                self._records.popleft()

    def summary(self, since_mono: float, now_mono: float) -> WindowSummary:
        """Aggregate the records with `mono >= since_mono`."""
        with self._lock:
            recs = [r for r in self._records if r.mono >= since_mono]
        ok = [r for r in recs if not r.error]
        lat = [r.latency_ms for r in ok]
        span = max(now_mono - since_mono, 1e-9)
        return WindowSummary(
            frames=len(ok),
            errors=len(recs) - len(ok),
            latency_p50_ms=_pct(lat, 50),
            latency_p99_ms=_pct(lat, 99),
            detections_per_frame=(sum(r.detections for r in ok) / len(ok)) if ok else None,
            frame_age_p95_ms=_pct([r.frame_age_ms for r in ok], 95),
            fps=len(ok) / span,
        )
