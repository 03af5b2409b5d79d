"""The stage pieces without threads of their own: one-slot hand-off, batch collection."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from agent.stages.batching import BatchCollector
from agent.stages.slot import Slot
from agent.types import Frame


def test_slot_hands_items_over_in_order_and_holds_one() -> None:
    """A producer faster than the consumer waits: items arrive in order, none lost."""
    slot: Slot[int] = Slot()
    got: list[int] = []

    def consume() -> None:
        while (item := slot.take(5)) is not None:
            got.append(item)
            time.sleep(0.002)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(50):
        assert slot.put(i, timeout=5)
    slot.close()
    consumer.join(5)
    assert got == list(range(50))


def test_a_full_slot_refuses_at_timeout_and_close_keeps_the_last_item() -> None:
    slot: Slot[str] = Slot()
    assert slot.put("a", timeout=0)
    assert not slot.put("b", timeout=0.05)  # full: the producer waits, then gives up
    assert not slot.wait_empty(0.01)
    slot.close()
    assert not slot.put("c", timeout=0)  # closed: refused
    assert slot.take(0) == "a"  # the item already there still goes out
    assert slot.take(1) is None and slot.closed  # then None at once


class ListFeed:
    """A FrameFeed over a fixed list of frames (what a ReaderGroup would hand out)."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = list(frames)
        self.timeouts: list[float] = []

    def next_frame(self, timeout: float) -> Frame | None:
        self.timeouts.append(timeout)
        return self.frames.pop(0) if self.frames else None


def _frame(camera: str, index: int) -> Frame:
    return Frame(camera, np.zeros((4, 4, 3), np.uint8), 0.0, 0.0, index)


def _ids(frames: list[Frame]) -> list[str]:
    return [f"{f.camera}{f.index}" for f in frames]


def test_a_batch_takes_one_frame_per_camera_and_carries_a_repeat_over() -> None:
    """a0 b0 a1 c0 d0 e0 with limit 4 -> [a0 b0] (a1 carried) [a1 c0 d0 e0]: nothing lost."""
    feed = ListFeed(
        [_frame("a", 0), _frame("b", 0), _frame("a", 1)] + [_frame(c, 0) for c in ("c", "d", "e")]
    )
    collector = BatchCollector(feed)
    assert _ids(collector.collect(4, 0.01, 1.0)) == ["a0", "b0"]
    assert _ids(collector.collect(4, 0.01, 1.0)) == ["a1", "c0", "d0", "e0"]
    assert collector.collect(4, 0.01, 0.0) == []


def test_batch_of_one_is_one_frame_per_call_and_never_waits_for_more() -> None:
    feed = ListFeed([_frame("a", 0), _frame("b", 0)])
    collector = BatchCollector(feed)
    assert _ids(collector.collect(1, 5.0, 1.0)) == ["a0"]
    assert _ids(collector.collect(1, 5.0, 1.0)) == ["b0"]
    assert feed.timeouts == [1.0, 1.0]  # only the first frame is waited for


def test_more_frames_are_waited_for_at_most_max_wait() -> None:
    """After the first frame, the feed is asked with what is left of max_wait (then 0)."""
    now = [100.0]
    feed = ListFeed([_frame("a", 0)])
    collector = BatchCollector(feed, clock=lambda: now[0])
    assert _ids(collector.collect(4, 0.02, 1.0)) == ["a0"]
    assert feed.timeouts == [1.0, pytest.approx(0.02)]
