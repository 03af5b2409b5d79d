"""Synthetic tracking scenes with known ground truth (pure: numpy and a seed, no I/O).

A scene is a set of objects moving on straight lines through a frame, each with a box size,
an entry frame and a velocity. From the ground truth a simulated detector makes the boxes a
tracker sees: edge jitter, independent misses, misses while behind an occluder, a lower score
for the farther of two overlapping objects (what a real detector does in a crowd), and
low-score false positives. Everything is drawn from one `numpy.random.Generator` seeded per
scene, so every run sees the same frames.

Used by `bench/bench_tracking.py`; shapes follow `agent.types.Detections` (xyxy float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Mover:
    """One ground-truth object: box (w, h) whose top-left moves by `velocity` per frame."""

    oid: int
    start: int
    frames: int
    xy: tuple[float, float]
    velocity: tuple[float, float]
    size: tuple[float, float]

    def box(self, frame: int) -> tuple[float, float, float, float] | None:
        """x1, y1, x2, y2 at `frame`, or None when the object is not in the scene then."""
        t = frame - self.start
        if t < 0 or t >= self.frames:
            return None
        x = self.xy[0] + self.velocity[0] * t
        y = self.xy[1] + self.velocity[1] * t
        return (x, y, x + self.size[0], y + self.size[1])


@dataclass(frozen=True)
class DetectorModel:
    """How the simulated detector turns ground truth into boxes."""

    jitter_px: float = 1.0
    miss_rate: float = 0.0
    occluders: tuple[tuple[float, float, float, float], ...] = ()
    crowd_iou: float = 0.3
    crowd_score: tuple[float, float] = (0.2, 0.5)
    false_positives: float = 0.0


@dataclass(frozen=True)
class Scene:
    """A named scene: ground truth and detector model, `frames` long at `fps`."""

    name: str
    about: str
    movers: tuple[Mover, ...]
    detector: DetectorModel
    frames: int = 200
    fps: float = 10.0
    size: tuple[int, int] = (768, 576)
    seed: int = 0


@dataclass
class FrameData:
    """One frame: ground truth in the frame and the detector's output."""

    gt_ids: list[int] = field(default_factory=list)
    gt_xyxy: FloatArray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    xyxy: FloatArray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    confidence: FloatArray = field(default_factory=lambda: np.zeros((0,), np.float32))


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """(n, m) IoU of xyxy boxes `a` (n, 4) and `b` (m, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)).astype(np.float32)


def _clip(box: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...] | None:
    """Box clipped to the frame; None when less than a third of it is inside."""
    w, h = size
    x1, y1, x2, y2 = max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)
    if x2 <= x1 or y2 <= y1:
        return None
    if (x2 - x1) * (y2 - y1) < (box[2] - box[0]) * (box[3] - box[1]) / 3:
        return None
    return (x1, y1, x2, y2)


def _hidden(box: tuple[float, ...], occluders: tuple[tuple[float, ...], ...]) -> bool:
    """True when the box's centre is behind an occluder."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(o[0] <= cx <= o[2] and o[1] <= cy <= o[3] for o in occluders)


def _scores(gt: FloatArray, det: DetectorModel, rng: np.random.Generator) -> FloatArray:
    """Scores of the ground-truth boxes: high, except the farther one of an overlapping pair."""
    scores = rng.uniform(0.65, 0.95, len(gt)).astype(np.float32)
    ious = iou_matrix(gt, gt)
    np.fill_diagonal(ious, 0)
    for i, j in zip(*np.nonzero(ious > det.crowd_iou), strict=True):
        far = i if gt[i, 3] < gt[j, 3] else j  # the higher bottom edge is farther from the camera
        scores[far] = min(scores[far], rng.uniform(*det.crowd_score))
    return scores


def _false_positives(scene: Scene, rng: np.random.Generator) -> FloatArray:
    n = rng.poisson(scene.detector.false_positives)
    w, h = scene.size
    xy = rng.uniform((0, 0), (w - 40, h - 80), (n, 2))
    wh = rng.uniform((20, 40), (40, 80), (n, 2))
    return np.hstack([xy, xy + wh]).astype(np.float32)


def render(scene: Scene) -> list[FrameData]:
    """Ground truth and detections for every frame of `scene` (deterministic per seed)."""
    rng = np.random.default_rng(scene.seed)
    det = scene.detector
    frames = []
    for f in range(scene.frames):
        data = FrameData()
        boxes = []
        for m in scene.movers:
            raw = m.box(f)
            box = _clip(raw, scene.size) if raw is not None else None
            if box is None or _hidden(box, det.occluders):
                continue
            data.gt_ids.append(m.oid)
            boxes.append(box)
        data.gt_xyxy = np.array(boxes, np.float32).reshape(-1, 4)
        scores = _scores(data.gt_xyxy, det, rng)
        keep = rng.random(len(boxes)) >= det.miss_rate
        noisy = data.gt_xyxy + rng.normal(0, det.jitter_px, data.gt_xyxy.shape).astype(np.float32)
        fp = _false_positives(scene, rng)
        data.xyxy = np.vstack([noisy[keep], fp]).astype(np.float32)
        fp_scores = rng.uniform(0.15, 0.45, len(fp)).astype(np.float32)
        data.confidence = np.concatenate([scores[keep], fp_scores]).astype(np.float32)
        frames.append(data)
    return frames


def _crossing() -> Scene:
    """Two groups walking towards each other on the same band: every pair crosses."""
    movers = []
    for i in range(3):
        movers.append(Mover(i, i * 12, 110, (-40, 240 + i * 14), (8.0, 0.3), (40, 100)))
        movers.append(Mover(10 + i, i * 12, 110, (770, 250 + i * 14), (-8.0, -0.2), (40, 100)))
    return Scene(
        "crossing",
        "6 people, two groups crossing head-on at 8 px/frame; the farther one of an "
        "overlapping pair drops to score 0.2-0.5",
        tuple(movers),
        DetectorModel(jitter_px=1.5),
    )


def _occlusion() -> Scene:
    """Objects pass behind a pillar and come out the other side."""
    movers = tuple(
        Mover(i, i * 25, 120, (-50, 60 + i * 120), (7.0, 0.5), (45, 100)) for i in range(4)
    )
    return Scene(
        "occlusion",
        "4 people walk behind a 120 px pillar at 7 px/frame: each is missing for ~17 frames",
        movers,
        DetectorModel(jitter_px=1.5, occluders=((330, 0, 450, 576),)),
    )


def _missed() -> Scene:
    """Plenty of room, but the detector misses a third of the boxes."""
    rng = np.random.default_rng(3)
    movers = tuple(
        Mover(i, int(rng.integers(0, 60)), 140, (60 + 80 * i, 40 + 50 * (i % 4)),
              (float(rng.uniform(-2, 2)), float(rng.uniform(1, 3))), (40, 90))
        for i in range(8)
    )  # fmt: skip
    return Scene(
        "missed",
        "8 people, 33 % of detections missed at random",
        movers,
        DetectorModel(jitter_px=1.5, miss_rate=0.33),
    )


def _fast() -> Scene:
    """Vehicles at 60 px/frame: consecutive boxes do not overlap at all."""
    movers = tuple(
        Mover(i, i * 6, 15, (-100, 60 + 120 * i), (60.0, 4.0 * (i % 2)), (100, 60))
        for i in range(4)
    )
    movers += tuple(
        Mover(10 + i, 40 + i * 9, 15, (768, 120 + 120 * i), (-60.0, 0.0), (100, 60))
        for i in range(3)
    )
    return Scene(
        "fast",
        "7 cars at 60 px/frame, 100x60 px boxes (IoU 0.25 between consecutive frames)",
        movers,
        DetectorModel(jitter_px=2.0),
        frames=80,
    )


def _jitter() -> Scene:
    """Small boxes with noisy edges: IoU between frames swings widely."""
    rng = np.random.default_rng(5)
    movers = tuple(
        Mover(i, 0, 200, (60 + 85 * i, 100 + 40 * (i % 3)),
              (float(rng.uniform(-1.5, 1.5)), float(rng.uniform(0.5, 1.5))), (24, 48))
        for i in range(8)
    )  # fmt: skip
    return Scene(
        "jitter",
        "8 small (24x48 px) slow objects, box edges jittered by 5 px (sd)",
        movers,
        DetectorModel(jitter_px=5.0),
    )


def _crowd() -> Scene:
    """Many people in every direction, misses, jitter and false positives together."""
    rng = np.random.default_rng(7)
    movers = []
    for i in range(24):
        start = int(rng.integers(0, 120))
        xy = (float(rng.uniform(0, 700)), float(rng.uniform(0, 480)))
        v = (float(rng.uniform(-9, 9)), float(rng.uniform(-6, 6)))
        movers.append(Mover(i, start, int(rng.integers(40, 120)), xy, v, (36, 90)))
    return Scene(
        "crowd",
        "24 people in random directions at up to 11 px/frame, 10 % misses, 3 px jitter, "
        "~1 false positive per frame",
        tuple(movers),
        DetectorModel(jitter_px=3.0, miss_rate=0.1, false_positives=1.0),
    )


def scenes() -> list[Scene]:
    """Every quality scene, in report order."""
    return [_crossing(), _occlusion(), _missed(), _fast(), _jitter(), _crowd()]


def cost_scene(objects: int, frames: int = 150) -> Scene:
    """`objects` movers spread over a 1920x1080 frame for the per-frame cost measurement."""
    rng = np.random.default_rng(objects)
    cols = int(np.ceil(np.sqrt(objects * 16 / 9)))
    movers = tuple(
        Mover(i, 0, frames, (40 + (i % cols) * 1800 / cols, 40 + (i // cols) * 60.0),
              (float(rng.uniform(-3, 3)), float(rng.uniform(-1, 1))), (30, 50))
        for i in range(objects)
    )  # fmt: skip
    return Scene(
        f"cost-{objects}",
        f"{objects} objects",
        movers,
        DetectorModel(jitter_px=1.0),
        frames=frames,
        size=(1920, 1080 + 60 * objects // cols),
    )
