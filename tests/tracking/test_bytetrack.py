"""Our ByteTrack (agent/tracking/bytetrack.py): the batched closed-form Kalman filter against
the textbook matrix form, and the track lifecycle on literal scenes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.tracking import kalman
from agent.tracking.bytetrack import BuiltinTracker, iou_matrix
from agent.tracking.config import TrackingConfig
from agent.tracking.tracker import ByteTracker
from agent.types import Detections
from tests.tracking.test_tracker import dets

REPO = Path(__file__).resolve().parents[2]
NOISE = kalman.Noise(q=0.01, r=0.1)
F = np.block([[np.eye(4), np.eye(4)], [np.zeros((4, 4)), np.eye(4)]])
H = np.hstack([np.eye(4), np.zeros((4, 4))])

# Three tracks: fresh (P0), settled with velocity, uncertain after misses.
POS = np.array([[10.0, 20, 50, 120], [100, 100, 140, 200], [300, 50, 330, 110]])
VEL = np.array([[0.0, 0, 0, 0], [5, -1, 5, -1], [-8, 0, -7, 1]])
COV = np.array([[1.0, 0.0, 1.0], [0.05, 0.02, 0.03], [4.2, 1.1, 0.6]])
Z = np.array([[12.0, 19, 53, 121], [106, 98, 146, 198], [290, 52, 322, 109]])


def textbook(x: np.ndarray, p: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One track, predict then update, the 8x8 way (explicit inverse)."""
    x = F @ x
    p = F @ p @ F.T + NOISE.q * np.eye(8)
    s = H @ p @ H.T + NOISE.r * np.eye(4)
    k = p @ H.T @ np.linalg.inv(s)
    x = x + k @ (z - H @ x)
    i_kh = np.eye(8) - k @ H
    p = i_kh @ p @ i_kh.T + k @ (NOISE.r * np.eye(4)) @ k.T  # Joseph form
    return x, p


def test_batched_kalman_equals_the_per_track_textbook_form() -> None:
    """Predict + update of all tracks at once gives each track's 8x8 textbook result."""
    pos, vel, cov = kalman.predict(POS, VEL, COV, NOISE)
    pos, vel, cov = kalman.update(pos, vel, cov, Z, NOISE)
    full = kalman.full_covariance(cov)
    start = kalman.full_covariance(COV)
    for i in range(len(POS)):
        x, p = textbook(np.concatenate([POS[i], VEL[i]]), start[i], Z[i])
        np.testing.assert_allclose(np.concatenate([pos[i], vel[i]]), x, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(full[i], p, rtol=1e-12, atol=1e-12)


def test_iou_matrix() -> None:
    a = np.array([[0.0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[5.0, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[25 / 175, 1, 0], [0, 0, 0]])
    assert iou_matrix(a, b[:0]).shape == (2, 0)


def run(cfg: TrackingConfig, frames: list[Detections]) -> list[list[int | None]]:
    tracker = BuiltinTracker(cfg)
    return [tracker.update("cam", f) for f in frames]


BOX = (100.0, 100.0, 140.0, 200.0)


@pytest.mark.parametrize("min_hits", [1, 2, 3, 5])
def test_an_id_comes_with_the_min_hits_th_detection(min_hits: int) -> None:
    ids = run(TrackingConfig(enabled=True, min_hits=min_hits), [dets([BOX])] * 8)
    assert [i[0] for i in ids] == [None] * (min_hits - 1) + [0] * (9 - min_hits)


@pytest.mark.parametrize(
    ("gap", "same_id"),
    [(1, True), (4, True), (5, True), (6, False), (12, False)],
)
def test_a_missing_object_keeps_its_id_within_the_buffer(gap: int, same_id: bool) -> None:
    """lost_track_frames 5: missing for up to 5 processed frames keeps the id; 6 is a new one."""
    cfg = TrackingConfig(enabled=True, min_hits=2, lost_track_frames=5)
    frames = [dets([BOX])] * 4 + [Detections.empty()] * gap + [dets([BOX])] * 3
    ids = [f[0] if f else "empty" for f in run(cfg, frames)]
    assert ids[3] == 0 and ids[4 : 4 + gap] == ["empty"] * gap
    assert ids[-1] == (0 if same_id else 1)
    assert ids[4 + gap] == (0 if same_id else None)  # a new track is tentative first


def test_low_score_boxes_carry_a_track_through_a_faint_stretch() -> None:
    """Second stage: 6 frames of score 0.2 (below high_threshold) keep the id; they start
    nothing where no track is, and a tentative track is not confirmed by them alone."""
    cfg = TrackingConfig(enabled=True, min_hits=2, lost_track_frames=2)
    moving = [(100.0 + 4 * i, 100.0, 140.0 + 4 * i, 200.0) for i in range(14)]
    frames = [dets([b], 0.9 if i < 4 or i >= 10 else 0.2) for i, b in enumerate(moving)]
    ids = [f[0] for f in run(cfg, frames)]
    assert ids[1:] == [0] * 13
    faint_only = run(cfg, [dets([BOX], 0.2)] * 5)
    assert faint_only == [[None]] * 5


def test_two_crossing_objects_keep_their_ids() -> None:
    """Head-on crossing at 8 px per frame with overlapping boxes: no swap."""
    frames = []
    for i in range(60):
        a = (100.0 + 8 * i, 100.0, 150.0 + 8 * i, 220.0)
        b = (620.0 - 8 * i, 110.0, 670.0 - 8 * i, 230.0)
        frames.append(dets([a, b]))
    ids = run(TrackingConfig(enabled=True), frames)
    assert ids[2] == [0, 1] and all(f == [0, 1] for f in ids[2:])


def test_empty_frames_and_ids_never_reused_after_reset() -> None:
    tracker = BuiltinTracker(TrackingConfig(enabled=True, min_hits=1))
    assert tracker.update("cam", Detections.empty()) == []
    assert tracker.update("cam", dets([BOX, (300, 100, 340, 200)])) == [0, 1]
    assert tracker.update("cam", Detections.empty()) == []
    assert tracker.update("cam", dets([BOX])) == [0]
    tracker.reset("cam")
    tracker.reset("cam")  # twice: still no reuse
    assert tracker.update("cam", dets([BOX])) == [2]
    assert tracker.update("other", dets([BOX])) == [0]


def test_same_ids_as_the_trackers_adapter() -> None:
    """The same algorithm and tuning as `trackers`' ByteTrack: on a jittered scene with misses
    and faint boxes both give the same tracks (ids up to renaming) on every box."""
    pytest.importorskip("trackers", reason="the adapter's package (scripts/install-tracking.sh)")
    rng = np.random.default_rng(7)
    cfg = TrackingConfig(enabled=True)
    ours, theirs = BuiltinTracker(cfg), ByteTracker(cfg)
    starts = rng.uniform(0, 600, (8, 2))
    speed = rng.uniform(-9, 9, (8, 2))
    mapping: dict[int, int] = {}
    boxes_seen = 0
    for f in range(80):
        xy = starts + f * speed
        boxes = np.hstack([xy, xy + (40, 90)]) + rng.normal(0, 2, (8, 4))
        shown = rng.random(8) > 0.15
        scores = np.where(rng.random(8) < 0.2, 0.3, 0.9)[shown]
        frame = Detections(
            boxes[shown].astype(np.float32), scores.astype(np.float32), np.zeros(shown.sum(), int)
        )
        for a, b in zip(ours.update("c", frame), theirs.update("c", frame), strict=True):
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert mapping.setdefault(b, a) == a
                boxes_seen += 1
    assert boxes_seen > 300 and len(set(mapping.values())) == len(mapping)


def test_the_default_tracker_never_imports_the_trackers_package() -> None:
    """`implementation: builtin` (the default) runs without `trackers` and `supervision`."""
    code = (
        "import sys, numpy as np\n"
        "from agent.tracking.build import make_tracker\n"
        "from agent.tracking.config import TrackingConfig\n"
        "from agent.types import Detections\n"
        "t = make_tracker(TrackingConfig(enabled=True, min_hits=1))\n"
        "d = Detections(np.array([[1, 2, 30, 40]], np.float32), np.ones(1, np.float32),"
        " np.zeros(1, np.int64))\n"
        "assert t.update('c', d) == [0]\n"
        "print(sorted(m for m in ('trackers', 'supervision') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"
