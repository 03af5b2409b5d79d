"""Pure decisions of the labeller: class mapping, frame sampling, time split, YOLO lines.

No file or network I/O here; everything is tested with literal data.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import numpy.typing as npt

from agent.label.teachers import LabelledBox
from agent.util import near_duplicate
from agent.util.labels import yolo_label_line
from agent.util.near_duplicate import THUMB_SIZE as THUMB_SIZE


class Split(str, Enum):
    """Dataset split a sample belongs to."""

    TRAIN = "train"
    VAL = "val"


@dataclass(frozen=True)
class ClassMap:
    """Teacher label -> dataset class, with the dataset's class order.

    Attributes:
        names: dataset class names; index = YOLO class id.
        mapping: teacher label -> dataset class id.
    """

    names: tuple[str, ...]
    mapping: dict[str, int]

    def spec(self) -> str:
        """The canonical `teacher=class,...` text of this map (round-trips `parse_class_map`)."""
        return ",".join(f"{label}={self.names[i]}" for label, i in self.mapping.items())


def parse_class_map(text: str) -> ClassMap:
    """Parse `person=person,car=car,truck=car` (or just `person,car`) into a ClassMap.

    Dataset class ids follow the order in which dataset classes first appear.

    Raises:
        ValueError: empty text, empty names, or a teacher label given twice.
    """
    names: list[str] = []
    mapping: dict[str, int] = {}
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"bad class list {text!r}: expected e.g. 'person=person,truck=car'")
    for item in items:
        label, sep, target = item.partition("=")
        label, target = label.strip(), (target.strip() if sep else label.strip())
        if not label or not target:
            raise ValueError(f"bad class mapping {item!r}: expected 'teacher_label=class'")
        if label in mapping:
            raise ValueError(f"teacher label {label!r} is mapped twice in {text!r}")
        if target not in names:
            names.append(target)
        mapping[label] = names.index(target)
    return ClassMap(names=tuple(names), mapping=mapping)


def unknown_labels(class_map: ClassMap, vocabulary: frozenset[str] | None) -> list[str]:
    """Teacher labels in the map that the teacher can never emit (none for open vocabularies)."""
    if vocabulary is None:
        return []
    return [label for label in class_map.mapping if label not in vocabulary]


@dataclass(frozen=True)
class DatasetBox:
    """One box of the dataset: class id, score and corners in pixels."""

    class_id: int
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float


def _iou(a: DatasetBox, b: DatasetBox) -> float:
    iw = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    ih = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = iw * ih
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def select_boxes(
    boxes: Sequence[LabelledBox],
    class_map: ClassMap,
    min_confidence: float,
    merge_iou: float = 0.7,
) -> list[DatasetBox]:
    """Keep wanted, confident boxes, renamed to dataset classes, duplicates merged.

    A NaN confidence (a teacher without scores) passes any threshold. After renaming, two
    labels can describe one object (COCO 'car' and 'truck' both -> 'car'): boxes of the same
    dataset class overlapping by IoU >= `merge_iou` keep only the most confident one.
    """
    kept: list[DatasetBox] = []
    for box in boxes:
        class_id = class_map.mapping.get(box.label)
        if class_id is None:
            continue
        if not math.isnan(box.confidence) and box.confidence < min_confidence:
            continue
        if box.x2 - box.x1 <= 0 or box.y2 - box.y1 <= 0:
            continue
        kept.append(DatasetBox(class_id, box.confidence, box.x1, box.y1, box.x2, box.y2))
    order = sorted(kept, key=lambda b: -b.confidence if not math.isnan(b.confidence) else 0.0)
    merged: list[DatasetBox] = []
    for box in order:
        if all(m.class_id != box.class_id or _iou(m, box) < merge_iou for m in merged):
            merged.append(box)
    return merged


def yolo_line(box: DatasetBox, width: int, height: int) -> str:
    """Format one box as a YOLO label line `class cx cy w h`, normalised to 0..1.

    The box is clipped to the image first.

    Raises:
        ValueError: the image size is not positive or the clipped box is empty.
    """
    return yolo_label_line(box.class_id, box.x1, box.y1, box.x2, box.y2, width, height)


def label_text(boxes: Sequence[DatasetBox], width: int, height: int) -> str:
    """The whole label file for one image: one YOLO line per box ('' when there are none)."""
    return "".join(yolo_line(b, width, height) + "\n" for b in boxes)


def frame_change(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Mean absolute difference (0..255) of two same-shape grey thumbnails (h, w) uint8
    (the shared rule of `agent.util.near_duplicate`)."""
    if a.shape != b.shape:
        raise ValueError(f"thumbnails differ in shape: {a.shape} vs {b.shape}")
    return near_duplicate.frame_change(a.tobytes(), b.tobytes())


@dataclass
class FrameSampler:
    """Decides which video frames to keep: every Nth, minus near-duplicates.

    A frame on the every-Nth grid is a near-duplicate when its thumbnail differs from the
    last *kept* frame's by less than `min_change` (mean absolute grey level, 0..255);
    `min_change` 0 keeps every grid frame. The rule is `agent.util.near_duplicate`'s.
    """

    every: int
    min_change: float
    _filter: near_duplicate.NearDuplicateFilter = field(init=False)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        self._filter = near_duplicate.NearDuplicateFilter(self.min_change)

    def on_grid(self, index: int) -> bool:
        """True when frame `index` (0-based) is one of every Nth frames."""
        return index % self.every == 0

    def offer(self, index: int, thumb: npt.NDArray[np.uint8]) -> bool:
        """Return True to keep frame `index` with grey thumbnail `thumb` (h, w) uint8."""
        if not self.on_grid(index):
            return False
        return self._filter.offer(np.ascontiguousarray(thumb).tobytes())


def time_split(indices: Sequence[int], val_fraction: float, gap: int) -> dict[int, Split | None]:
    """Split sampled frame indices by time: the last part of the video is validation.

    Frames whose index lies within `gap` frames before the first validation frame are
    dropped (mapped to None) so that no two neighbouring frames end up on both sides.

    Args:
        indices: kept frame indices, strictly increasing.
        val_fraction: share of the kept frames that go to validation, 0..1 (0: no val).
        gap: minimum distance in source frames between any train and any val frame.

    Raises:
        ValueError: bad fraction, negative gap or indices not increasing.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    if any(b <= a for a, b in zip(indices, indices[1:], strict=False)):
        raise ValueError("frame indices must be strictly increasing")
    n_val = math.ceil(len(indices) * val_fraction) if val_fraction > 0 else 0
    if n_val == 0:
        return {i: Split.TRAIN for i in indices}
    first_val = indices[len(indices) - n_val]
    out: dict[int, Split | None] = {}
    for i in indices:
        if i >= first_val:
            out[i] = Split.VAL
        elif first_val - i <= gap:
            out[i] = None
        else:
            out[i] = Split.TRAIN
    return out


def name_split(name: str, val_fraction: float) -> Split:
    """Stable split of an unordered image by a hash of its name (same answer on every run)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {val_fraction}")
    bucket = zlib.crc32(name.encode("utf-8")) % 10_000
    return Split.VAL if bucket < val_fraction * 10_000 else Split.TRAIN
