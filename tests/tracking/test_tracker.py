"""Both trackers (`tracking.implementation`: our ByteTrack and the `trackers` adapter): ids in
input order, stable while tracked, never reused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.tracking.build import make_tracker
from agent.tracking.config import TrackingConfig
from agent.tracking.tracker import Tracker
from agent.types import Detections

IMPLEMENTATIONS = ["builtin", "trackers"]


def tracker_of(implementation: str, **cfg: Any) -> Tracker:
    """A fresh tracker of `implementation` with these `tracking:` settings."""
    if implementation == "trackers":
        pytest.importorskip("trackers", reason="the adapter's package (install-tracking.sh)")
    return make_tracker(TrackingConfig(enabled=True, implementation=implementation, **cfg))


def dets(boxes: list[tuple[float, float, float, float]], score: float = 0.9) -> Detections:
    n = len(boxes)
    return Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(n, 4),
        confidence=np.full((n,), score, dtype=np.float32),
        class_id=np.zeros((n,), dtype=np.int64),
    )


def walk(tracker: Tracker, camera: str, frames: int) -> list[list[int | None]]:
    """Two people walking towards each other's side, 5 px per frame, 10 fps."""
    out = []
    for i in range(frames):
        a = (100 + 5 * i, 100, 140 + 5 * i, 200)
        b = (600 - 5 * i, 300, 640 - 5 * i, 400)
        out.append(tracker.update(camera, dets([a, b])))
    return out


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_ids_are_stable_and_in_input_order(implementation: str) -> None:
    """After min_hits frames each box keeps its own id, reported in the detections' order."""
    tracker = tracker_of(implementation, min_hits=3)
    ids = walk(tracker, "cam", 30)
    assert ids[0] == [None, None]  # not confirmed yet
    settled = ids[5:]
    assert len({tuple(f) for f in settled}) == 1
    a, b = settled[0]
    assert a is not None and b is not None and a != b


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_cameras_are_independent_and_reset_never_reuses_ids(implementation: str) -> None:
    """A second camera has its own tracks; after a reset (model swap) new ids follow."""
    tracker = tracker_of(implementation, min_hits=2)
    first = walk(tracker, "a", 10)[-1]
    other = walk(tracker, "b", 10)[-1]
    assert set(first) == set(other) == {0, 1}  # ids are per camera
    tracker.reset("a")
    again = walk(tracker, "a", 10)[-1]
    assert set(again) == {2, 3}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_low_score_boxes_keep_a_track_alive_but_never_start_one(implementation: str) -> None:
    """ByteTrack's second stage: a faint box continues its track and starts none."""
    tracker = tracker_of(implementation, min_hits=2, high_threshold=0.5)
    box = (100.0, 100.0, 140.0, 200.0)
    for _ in range(5):
        tid = tracker.update("c", dets([box]))
    faint = tracker.update("c", dets([box], score=0.3))
    assert faint == tid
    assert tracker.update("c", dets([(500, 100, 540, 200)], score=0.3)) == [None]
