"""Hard-frame policy: uncertainty band, empty rule with sampling, token bucket, mailbox."""

from __future__ import annotations

import threading

import pytest

from agent.fallback.config import CameraPolicy, EmptyRule, RateLimit
from agent.fallback.policy import (
    EmptyTracker,
    HardReason,
    Mailbox,
    TokenBucket,
    check_frame,
    is_hard,
)
from agent.types import Detections
from tests.fallback.conftest import dets

BAND = CameraPolicy(band_lo=0.3, band_hi=0.6)


@pytest.mark.parametrize(
    ("confs", "policy", "hard"),
    [
        ((0.9, 0.95), BAND, False),  # all confident
        ((0.9, 0.45), BAND, True),  # one inside the band
        ((0.3,), BAND, True),  # lower edge is inside
        ((0.6,), BAND, False),  # upper edge is outside
        ((0.1,), BAND, False),  # below the band: YOLO is sure it is nothing
        ((), BAND, False),  # nothing detected, no empty rule
        ((float("nan"),), BAND, False),  # NaN never counts as uncertain
        ((0.4, 0.5), CameraPolicy(band_lo=0.3, band_hi=0.6, min_uncertain=3), False),  # 2 < 3
        ((0.4, 0.5, 0.35), CameraPolicy(band_lo=0.3, band_hi=0.6, min_uncertain=3), True),  # 3
    ],
)
def test_band(confs: tuple[float, ...], policy: CameraPolicy, hard: bool) -> None:
    """A frame is hard when enough confidences fall in [band_lo, band_hi)."""
    assert is_hard(dets(*confs), policy) is hard


def test_band_must_be_ordered() -> None:
    """A band with hi <= lo is refused by the config."""
    with pytest.raises(ValueError, match="band_hi"):
        CameraPolicy(band_lo=0.5, band_hi=0.5)


def test_empty_rule_waits_then_samples() -> None:
    """An empty camera is hard after `after_s`, then at most once per `sample_every_s`."""
    policy = CameraPolicy(empty=EmptyRule(after_s=10.0, sample_every_s=5.0))
    tr = EmptyTracker()
    empty = Detections.empty()
    got = [(t, check_frame(empty, policy, tr, t)) for t in (0.0, 5.0, 9.9, 10.0, 12.0, 14.9, 15.0)]
    assert [t for t, r in got if r == HardReason.EMPTY] == [10.0, 15.0]


def test_empty_rule_resets_on_detection() -> None:
    """A detection restarts the empty clock."""
    policy = CameraPolicy(
        band_lo=0.3, band_hi=0.6, empty=EmptyRule(after_s=10.0, sample_every_s=5.0)
    )
    tr = EmptyTracker()
    assert check_frame(Detections.empty(), policy, tr, 0.0) == HardReason.NONE
    assert check_frame(dets(0.9), policy, tr, 8.0) == HardReason.NONE
    assert check_frame(Detections.empty(), policy, tr, 12.0) == HardReason.NONE  # only 4 s empty
    assert check_frame(Detections.empty(), policy, tr, 18.0) == HardReason.EMPTY


def test_empty_rule_off_by_default() -> None:
    """Without the rule, long empty stretches are never hard."""
    tr = EmptyTracker()
    assert all(
        check_frame(Detections.empty(), BAND, tr, float(t)) == HardReason.NONE
        for t in range(0, 1000, 50)
    )


def test_bucket_burst_then_rate() -> None:
    """The bucket allows `burst` at once, then one token per 60/per_minute seconds."""
    b = TokenBucket(RateLimit(per_minute=6, burst=2), now=0.0)
    assert [b.try_take(0.0) for _ in range(3)] == [True, True, False]
    assert b.try_take(9.9) is False
    assert b.try_take(10.0) is True
    assert b.try_take(10.0) is False


def test_bucket_caps_at_burst() -> None:
    """A long idle time never stores more than `burst` tokens."""
    b = TokenBucket(RateLimit(per_minute=60, burst=3), now=0.0)
    assert sum(b.try_take(1000.0) for _ in range(10)) == 3


def test_bucket_ignores_clock_going_back() -> None:
    """A monotonic clock reading older than the last one adds no tokens."""
    b = TokenBucket(RateLimit(per_minute=60, burst=1), now=100.0)
    assert b.try_take(100.0) is True
    assert b.try_take(50.0) is False


def test_mailbox_keeps_newest_only() -> None:
    """Putting twice keeps the second item and returns the displaced first."""
    box: Mailbox[int] = Mailbox()
    assert box.put(1) is None
    assert box.put(2) == 1
    assert len(box) == 1
    assert box.get(timeout=0) == 2
    assert box.get(timeout=0) is None


def test_mailbox_get_wakes_on_put() -> None:
    """A waiting get returns as soon as an item is put."""
    box: Mailbox[str] = Mailbox()
    threading.Timer(0.05, box.put, args=("x",)).start()
    assert box.get(timeout=5.0) == "x"


def test_mailbox_close_wakes_waiter() -> None:
    """close() releases a waiting get with None."""
    box: Mailbox[str] = Mailbox()
    threading.Timer(0.05, box.close).start()
    assert box.get(timeout=5.0) is None
