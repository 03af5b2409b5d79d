"""Frames without detections go through both trackers (the adapter's bug was found by
bench_tracking.py)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.types import Detections
from tests.tracking.test_tracker import IMPLEMENTATIONS, tracker_of


def box(x: float) -> Detections:
    return Detections(
        np.array([[x, 100, x + 50, 200]], np.float32),
        np.array([0.9], np.float32),
        np.array([0], np.int64),
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_an_empty_frame_returns_no_ids_and_keeps_the_track(implementation: str) -> None:
    """An empty frame (the library returns detections without `data` columns) gives [] and
    the track keeps its id on the next frame."""
    tracker = tracker_of(implementation, min_hits=1)
    assert tracker.update("cam", Detections.empty()) == []
    ids = [tracker.update("cam", box(100 + 3 * i))[0] for i in range(4)]
    assert tracker.update("cam", Detections.empty()) == []
    after = tracker.update("cam", box(115))[0]
    assert ids[-1] is not None and after == ids[-1]
