"""Our ByteTrack (pure numpy + scipy's assignment): the `Tracker` behind `tracking.implementation:
builtin`.

The same algorithm as the `trackers` package's ByteTrack, which it replaces by default
(docs/benchmarks.md "Tracking" compares the two side by side), at a fraction of its cost: the
tracks of a camera are arrays (boxes, velocities, Kalman covariances, counters), so the Kalman
predict and update (`agent.tracking.kalman`, closed form) and the IoU matrices run over all
tracks at once; the only Python loop left is over the few ids handed out in a frame.

Per processed frame of a camera:
1. every track is predicted one frame ahead (constant velocity);
2. boxes at or above `high_threshold` are assigned to all tracks (Hungarian on IoU, pairs
   below `min_iou` excluded before the assignment);
3. the weaker boxes are assigned to the tracks still unmatched (ByteTrack's second stage:
   a faint box keeps its track alive, it never starts one);
4. matched tracks are corrected with their box; a track matched `min_hits` frames in a row
   gets the camera's next id (with `min_hits` 1 on its first box);
5. unmatched strong boxes at or above `activation_threshold` start tentative tracks;
6. a tentative track missed once is dropped; a confirmed one is kept while it has been
   missed for at most `lost_track_frames` frames (so an object missing for that many frames
   comes back with its id on the next one).

Ids are ours: per camera, growing for the whole boot, never reused (also after `reset`).
Class-agnostic, like the adapter: a box continues the track it overlaps whatever its class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from agent.tracking import kalman
from agent.tracking.config import TrackingConfig
from agent.types import Detections

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]


def iou_matrix(a: Array, b: Array) -> Array:
    """(len(a), len(b)) IoU of xyxy boxes (0 where the union is empty)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def assign(iou: Array, min_iou: float) -> tuple[Index, Index]:
    """Rows and columns of the assignment maximising the summed IoU over the pairs with IoU
    >= `min_iou` (rows ascending); pairs below it never match."""
    if iou.size == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty
    gated = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(gated, maximize=True)
    keep = gated[rows, cols] > 0.0
    if min_iou <= 0.0:  # IoU 0 allowed: a zero-overlap pair is a match too
        keep = iou[rows, cols] >= min_iou
    return rows[keep], cols[keep]


def _others(n: int, taken: Index) -> Index:
    """0..n-1 without `taken`, ascending."""
    free = np.ones(n, np.bool_)
    free[taken] = False
    return np.flatnonzero(free)


@dataclass
class Tracks:
    """The tracks of one camera as arrays, one row per track (in creation order)."""

    pos: Array  # (n, 4) x1, y1, x2, y2
    vel: Array  # (n, 4) their velocities, pixels per frame
    cov: Array  # (n, 3) Kalman covariance block (agent.tracking.kalman)
    ids: npt.NDArray[np.int64]  # (n,) our id, -1 while tentative
    hits: npt.NDArray[np.int64]  # (n,) consecutive frames matched
    missed: npt.NDArray[np.int64]  # (n,) frames since the last match (0: matched now)

    @classmethod
    def empty(cls) -> Tracks:
        z4, z = np.zeros((0, 4), np.float64), np.zeros(0, np.int64)
        return cls(z4, z4.copy(), np.zeros((0, 3), np.float64), z, z.copy(), z.copy())

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: npt.NDArray[np.bool_]) -> Tracks:
        return Tracks(
            self.pos[keep],
            self.vel[keep],
            self.cov[keep],
            self.ids[keep],
            self.hits[keep],
            self.missed[keep],
        )

    def append(self, boxes: Array, ids: npt.NDArray[np.int64], noise: kalman.Noise) -> Tracks:
        """These tracks plus new ones started from `boxes` (one hit each)."""
        n = len(boxes)
        return Tracks(
            np.concatenate([self.pos, boxes]),
            np.concatenate([self.vel, np.zeros((n, 4))]),
            np.concatenate([self.cov, kalman.initial_cov(n, noise)]),
            np.concatenate([self.ids, ids]),
            np.concatenate([self.hits, np.ones(n, np.int64)]),
            np.concatenate([self.missed, np.zeros(n, np.int64)]),
        )


class CameraTracker:
    """ByteTrack over the frames of one camera; `next_id` is the camera's id counter."""

    def __init__(self, cfg: TrackingConfig, next_id: int = 0, noise: kalman.Noise | None = None):
        self.cfg = cfg
        self.noise = noise or kalman.Noise()
        self.tracks = Tracks.empty()
        self.next_id = next_id

    def step(self, xyxy: Array, confidence: Array) -> npt.NDArray[np.int64]:
        """One id per box of the next frame (-1: not on a confirmed track)."""
        out = np.full(len(xyxy), -1, np.int64)
        t = self.tracks
        if len(t) == 0 and len(xyxy) == 0:
            return out
        t.pos, t.vel, t.cov = kalman.predict(t.pos, t.vel, t.cov, self.noise)
        t.hits[t.missed > 0] = 0
        t.missed += 1
        usable = np.isfinite(xyxy).all(axis=1)
        high = np.flatnonzero(usable & (confidence >= self.cfg.high_threshold))
        low = np.flatnonzero(usable & (confidence < self.cfg.high_threshold))
        rows, cols = assign(iou_matrix(t.pos, xyxy[high]), self.cfg.min_iou)
        rest = _others(len(t), rows)
        rows2, cols2 = assign(iou_matrix(t.pos[rest], xyxy[low]), self.cfg.min_iou)
        matched = np.concatenate([rows, rest[rows2]])
        boxes = np.concatenate([high[cols], low[cols2]])
        self._correct(matched, xyxy[boxes])
        out[boxes] = t.ids[matched]
        fresh = high[_others(len(high), cols)]
        fresh = fresh[confidence[fresh] >= self.cfg.activation_threshold]
        self._start(xyxy[fresh], fresh, out)
        self._prune()
        return out

    def _correct(self, matched: Index, boxes: Array) -> None:
        """Kalman-correct the matched tracks; confirm the ones with `min_hits` hits."""
        t = self.tracks
        if len(matched) == 0:
            return
        t.pos[matched], t.vel[matched], t.cov[matched] = kalman.update(
            t.pos[matched], t.vel[matched], t.cov[matched], boxes, self.noise
        )
        t.missed[matched] = 0
        t.hits[matched] += 1
        for i in matched[(t.ids[matched] < 0) & (t.hits[matched] >= self.cfg.min_hits)]:
            t.ids[i] = self._new_id()

    def _start(self, boxes: Array, where: Index, out: npt.NDArray[np.int64]) -> None:
        """Tentative tracks from unmatched strong boxes (confirmed at once with min_hits 1)."""
        if len(boxes) == 0:
            return
        ids = np.full(len(boxes), -1, np.int64)
        if self.cfg.min_hits <= 1:
            ids = np.array([self._new_id() for _ in range(len(boxes))], np.int64)
            out[where] = ids
        self.tracks = self.tracks.append(boxes, ids, self.noise)

    def _prune(self) -> None:
        """Drop tentative tracks missed this frame and confirmed ones lost for too long."""
        t = self.tracks
        keep = (t.missed <= self.cfg.lost_track_frames) & ((t.ids >= 0) | (t.missed == 0))
        if not keep.all():
            self.tracks = t.select(keep)

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class BuiltinTracker:
    """`Tracker` (agent.tracking.tracker) on our ByteTrack: one `CameraTracker` per camera."""

    def __init__(self, cfg: TrackingConfig) -> None:
        self._cfg = cfg
        self._cameras: dict[str, CameraTracker] = {}
        self._next_id: dict[str, int] = {}  # ids of cameras that were reset

    def update(self, camera: str, detections: Detections) -> list[int | None]:
        cam = self._cameras.get(camera)
        if cam is None:
            cam = CameraTracker(self._cfg, self._next_id.get(camera, 0))
            self._cameras[camera] = cam
        xyxy = detections.xyxy.astype(np.float64)
        confidence = np.nan_to_num(detections.confidence.astype(np.float64), nan=1.0)
        ids = cam.step(xyxy, confidence).tolist()
        return [None if i < 0 else i for i in ids]

    def reset(self, camera: str) -> None:
        cam = self._cameras.pop(camera, None)
        if cam is not None:
            self._next_id[camera] = cam.next_id
