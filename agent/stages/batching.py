"""Which frames go into one engine call: the newest frame of up to N cameras."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from agent.types import Frame


class FrameFeed(Protocol):
    """Where the loop gets frames: the newest unseen frame of some camera, fairly."""

    def next_frame(self, timeout: float) -> Frame | None:
        """Return a frame not returned before, or None after `timeout` seconds."""
        ...


class BatchCollector:
    """Collects a batch from a `FrameFeed`: at most one frame per camera, in feed order.

    The first frame is waited for up to `timeout`; more are taken while they come within
    `max_wait_s` of it. A second frame of a camera already in the batch ends the batch and
    is carried over as the first frame of the next one: no frame taken from the feed is
    dropped, and each camera's frames stay in order.
    """

    def __init__(self, feed: FrameFeed, clock: Callable[[], float] = time.monotonic) -> None:
        self._feed = feed
        self._clock = clock
        self._carry: Frame | None = None

    def collect(self, limit: int, max_wait_s: float, timeout: float) -> list[Frame]:
        """Up to `limit` frames of distinct cameras; [] when none came within `timeout`."""
        first = self._carry if self._carry is not None else self._feed.next_frame(timeout)
        self._carry = None
        if first is None:
            return []
        frames = [first]
        cameras = {first.camera}
        deadline = self._clock() + max_wait_s
        while len(frames) < limit:
            frame = self._feed.next_frame(max(0.0, deadline - self._clock()))
            if frame is None:
                break
            if frame.camera in cameras:
                self._carry = frame
                break
            frames.append(frame)
            cameras.add(frame.camera)
        return frames
