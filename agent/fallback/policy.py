"""Pure hard-frame policy: the uncertainty band, the 'should see objects' rule, the token
bucket, the newest-only single-slot mailbox and the hard frame it carries.

No I/O and no clock reads: callers pass `now` (monotonic seconds), so tests freeze time.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from agent.contracts.payloads import DetectionMessage
from agent.fallback.config import CameraPolicy, RateLimit
from agent.types import Detections, Frame

T = TypeVar("T")


@dataclass(frozen=True)
class HardFrame:
    """A frame the policy escalated, with its YOLO verdict: what the post stage hands to the
    fallback."""

    frame: Frame
    detections: Detections
    yolo: DetectionMessage
    class_names: tuple[str, ...]


class HardReason(str, enum.Enum):
    """Why a frame is hard (or `none`)."""

    NONE = "none"
    UNCERTAIN = "uncertain"
    EMPTY = "empty"


def uncertain_count(detections: Detections, band_lo: float, band_hi: float) -> int:
    """Count detections whose confidence is in [band_lo, band_hi); NaN scores never count.

    Args:
        detections: n detections; `confidence` is (n,) float32.
    """
    conf = detections.confidence
    return int(np.count_nonzero((conf >= band_lo) & (conf < band_hi)))


def is_hard(detections: Detections, policy: CameraPolicy) -> bool:
    """True when at least `policy.min_uncertain` detections fall in the uncertainty band."""
    return uncertain_count(detections, policy.band_lo, policy.band_hi) >= policy.min_uncertain


@dataclass
class EmptyTracker:
    """State of the 'should see objects' rule for one camera (monotonic seconds)."""

    last_seen: float | None = None
    last_sampled: float | None = None


def check_frame(
    detections: Detections, policy: CameraPolicy, empty: EmptyTracker, now: float
) -> HardReason:
    """Classify one frame and update `empty` (the only state touched).

    A frame is UNCERTAIN when it has enough detections in the band. When the camera has the
    empty rule, a frame with no detections is EMPTY once the camera has seen nothing for
    `after_s` seconds, at most once per `sample_every_s` (the sampling). The first frame
    starts the empty clock.
    """
    if empty.last_seen is None:
        empty.last_seen = now
    if len(detections) > 0:
        empty.last_seen = now
        empty.last_sampled = None
        return HardReason.UNCERTAIN if is_hard(detections, policy) else HardReason.NONE
    rule = policy.empty
    if rule is None or now - empty.last_seen < rule.after_s:
        return HardReason.NONE
    if empty.last_sampled is not None and now - empty.last_sampled < rule.sample_every_s:
        return HardReason.NONE
    empty.last_sampled = now
    return HardReason.EMPTY


class TokenBucket:
    """Escalation budget: `rate.per_minute` tokens per minute, at most `rate.burst` stored.

    Not thread-safe by itself; the hot path calls it from the inference thread only.
    """

    def __init__(self, rate: RateLimit, now: float) -> None:
        self._per_s = rate.per_minute / 60.0
        self._cap = float(rate.burst)
        self._tokens = float(rate.burst)
        self._t = now

    def _refill(self, now: float) -> None:
        if now > self._t:
            self._tokens = min(self._cap, self._tokens + (now - self._t) * self._per_s)
            self._t = now

    def available(self, now: float) -> float:
        """Tokens available at `now` (fractional)."""
        self._refill(now)
        return self._tokens

    def try_take(self, now: float) -> bool:
        """Consume one token if one is available at `now`; return whether it was."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Mailbox(Generic[T]):
    """A single slot keeping only the newest item; `put` never blocks.

    `put` returns the item it displaced (None if the slot was empty), so the caller can count
    replaced hard frames. `get` blocks up to `timeout` seconds.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> T | None:
        with self._cond:
            old = self._item
            self._item = item
            self._cond.notify()
            return old

    def get(self, timeout: float | None = None) -> T | None:
        """Take the item, waiting up to `timeout`; None on timeout or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake any waiter; later `get` calls return immediately."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return 0 if self._item is None else 1
