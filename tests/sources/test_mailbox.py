"""The pure parts of a camera reader: the newest-frame mailbox and the hung-call bookkeeping."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.sources.hang import HangWatch
from agent.sources.mailbox import FrameMailbox
from agent.types import Frame

IMAGE = np.zeros((2, 2, 3), np.uint8)


def offer(box: FrameMailbox, now: float) -> bool:
    """Decode a frame at `now` and put it in `box` if the fps cap lets it in."""
    index = box.next_index(now)
    if not box.due(now):
        return False
    box.put(Frame("cam", IMAGE, 1000.0 + now, now, index), now)
    return True


def test_untaken_frame_replaced_counts_as_dropped() -> None:
    """A frame replaced before anyone took it is dropped; a taken one is not."""
    box = FrameMailbox(None)
    offer(box, 0.0)
    offer(box, 0.1)
    assert box.dropped == 1
    assert box.take(-1).index == 1  # type: ignore[union-attr]
    offer(box, 0.2)
    assert box.dropped == 1 and box.delivered == 1


def test_take_only_returns_newer_frames_and_counts_once() -> None:
    """take(after_index) gives None for a frame not newer than after_index; re-takes count once."""
    box = FrameMailbox(None)
    assert box.take(-1) is None
    offer(box, 0.0)
    assert box.take(0) is None
    assert box.take(-1) is not None and box.take(-1) is not None
    assert box.delivered == 1


@pytest.mark.parametrize(
    ("times", "offered"),
    [
        ([0.0, 0.05, 0.1, 0.15, 0.2], [True, False, True, False, True]),  # 20 fps into a 10 fps cap
        ([0.0, 1.0, 1.05, 1.1], [True, True, False, True]),  # a late frame resets the schedule
    ],
)
def test_fps_cap_skips_early_frames(times: list[float], offered: list[bool]) -> None:
    """With fps_cap 10 a frame earlier than 0.1 s after the previous due time is skipped."""
    box = FrameMailbox(10.0)
    assert [offer(box, t) for t in times] == offered
    assert box.skipped == offered.count(False)
    assert box.index == len(times) - 1


def test_fps_over_trailing_window() -> None:
    """fps counts frames put in the slot over the last two seconds; fewer than two give 0."""
    box = FrameMailbox(None)
    offer(box, 0.0)
    assert box.fps(0.0) == 0.0
    for i in range(1, 11):
        offer(box, i * 0.1)
    assert box.fps(1.0) == pytest.approx(10.0)
    assert box.fps(10.0) == 0.0


def test_blocked_call_is_overdue_only_past_its_limit() -> None:
    """A blocked read is overdue after its limit; one that returned never is."""
    watch = HangWatch({"open": 5.0, "read": 2.0})
    watch.mark("read", 10.0)
    assert watch.overdue(12.0) is None
    assert watch.overdue(12.5) == ("read", 2.5)
    watch.mark(None, 12.6)
    assert watch.overdue(100.0) is None


def test_saturates_at_max_abandoned_live_threads_and_reports_once() -> None:
    """Two hung threads left behind saturate the watch (reported once); one that ends frees it."""
    release = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=e.wait, daemon=True) for e in release]
    for t in threads:
        t.start()
    watch = HangWatch({"read": 1.0}, max_abandoned=2)
    watch.abandon(threads[0])
    assert not watch.saturated()
    watch.abandon(threads[1])
    assert watch.saturated()
    assert watch.first_report() and not watch.first_report()
    release[0].set()
    threads[0].join(5)
    assert not watch.saturated() and watch.still_hung() == 1
    release[1].set()
