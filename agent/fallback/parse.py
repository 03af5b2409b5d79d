"""Torch-free parsing of Florence-2's generated text into detections (and polygons).

Florence-2 writes boxes as location tokens `<loc_N>`, N in [0, 999], each a bin of 1/1000 of
the image width (x) or height (y). `agent.fallback.postprocess` rebuilds transformers'
`post_process_generation` answer in numpy (bin centres, `(N + 0.5) * size / 1000`); this
module turns that answer into the product's `Detections` (boxes, polygons' bounding boxes,
OCR quads' bounding boxes) with YOLO class ids. Florence-2 gives no scores: every confidence
is NaN (published as `confidence: null`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from agent.fallback.postprocess import (
    QUANTIZE_BINS,
    TASK_KINDS,
    dequantize,
    has_complete_group,
    post_process,
    strip_specials,
)
from agent.fallback.prompts import Region, UnknownTaskError, build_prompt, check_task
from agent.types import Detections

__all__ = [
    "QUANTIZE_BINS",
    "TASK_KINDS",
    "FlorenceParseError",
    "FlorenceResult",
    "Region",
    "UnknownTaskError",
    "build_prompt",
    "check_task",
    "dequantize",
    "match_class",
    "parse_generation",
    "strip_specials",
]

_LOC_RE = re.compile(r"<loc_(\d+)>")

Polygon = npt.NDArray[np.float32]
"""(k, 2) float32 pixel vertices of one polygon."""


class FlorenceParseError(ValueError):
    """Florence-2's output does not parse for the task; `text` is the raw output."""

    def __init__(self, task: str, text: str, why: str) -> None:
        self.task = task
        self.text = text
        super().__init__(f"cannot parse Florence-2 output for {task}: {why}: {text[:200]!r}")


@dataclass(frozen=True)
class FlorenceResult:
    """Parsed answer of one Florence-2 run.

    Attributes:
        task: the task token, e.g. '<OD>'.
        detections: n boxes in pixels of the original frame; confidence (n,) all NaN;
            class_id (n,) index into the YOLO class names or -1. For polygon answers each
            box bounds its instance's polygons.
        labels: (n,) Florence-2's label text for each box.
        text: caption / the raw answer text for text tasks; None for box tasks.
        polygons: () for box and text tasks; else (n,) tuples of (k, 2) pixel polygons, one
            tuple per detection (an instance may have several polygons).
        answer: the answer as transformers' `post_process_generation` shapes it (floats).
    """

    task: str
    detections: Detections
    labels: tuple[str, ...]
    text: str | None
    polygons: tuple[tuple[Polygon, ...], ...] = ()
    answer: object = field(default=None, compare=False)


def match_class(label: str, class_names: tuple[str, ...]) -> int:
    """Index of `label` in `class_names` (case-insensitive; a plural 's' is tolerated), else -1."""
    key = label.strip().lower()
    names = [c.lower() for c in class_names]
    for cand in (
        key,
        key[:-1] if key.endswith("s") else None,
        key[:-2] if key.endswith("es") else None,
    ):
        if cand and cand in names:
            return names.index(cand)
    return -1


def _to_detections(
    labels: list[str],
    coords: npt.NDArray[np.float32],
    class_names: tuple[str, ...],
    size: tuple[int, int],
) -> Detections:
    """(n, 4) or (n, 8) pixel coordinates -> ordered, clipped xyxy Detections."""
    n = len(labels)
    if n == 0:
        return Detections.empty()
    xs, ys = coords[:, 0::2], coords[:, 1::2]
    w, h = size
    xyxy = np.stack(
        [xs.min(1).clip(0, w), ys.min(1).clip(0, h), xs.max(1).clip(0, w), ys.max(1).clip(0, h)],
        axis=1,
    ).astype(np.float32)
    return Detections(
        xyxy=xyxy,
        confidence=np.full((n,), np.nan, dtype=np.float32),
        class_id=np.array([match_class(lb, class_names) for lb in labels], dtype=np.int64),
    )


def _bounds(flat: list[list[float]]) -> list[float] | None:
    """The (x1, y1, x2, y2) bounds of flat [x, y, ...] polygons; None without a vertex."""
    pts = [p for poly in flat for p in zip(poly[0::2], poly[1::2], strict=True)]
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [min(xs), min(ys), max(xs), max(ys)]


def _instances(
    kind: str, answer: dict[str, list]
) -> tuple[list[str], list[list[float]], list[tuple[Polygon, ...]] | None]:
    """(labels, (n, 4|8) coordinate rows, per-instance polygons or None) of a box answer."""
    if kind == "ocr":
        return list(answer["labels"]), list(answer["quad_boxes"]), None
    if kind != "polygons" and "polygons" not in answer:
        return list(answer["labels"]), list(answer["bboxes"]), None
    box_labels = answer.get("bboxes_labels", [])
    labels, rows = list(box_labels), list(answer.get("bboxes", []))
    polys: list[tuple[Polygon, ...]] = [() for _ in rows]
    poly_labels = answer["labels"] if kind == "polygons" else answer["polygons_labels"]
    for label, flat in zip(poly_labels, answer["polygons"], strict=True):
        box = _bounds(flat)
        if box is None:
            continue
        labels.append(label)
        rows.append(box)
        polys.append(tuple(np.array(p, dtype=np.float32).reshape(-1, 2) for p in flat))
    return labels, rows, polys


def parse_generation(
    task: str,
    text: str,
    image_size: tuple[int, int],
    class_names: tuple[str, ...],
    *,
    region: Region | None = None,
) -> FlorenceResult:
    """Parse Florence-2's decoded output (special tokens kept) for `task`.

    Args:
        task: one of TASKS.
        text: decoded generation, e.g. '</s><s>car<loc_1><loc_2><loc_3><loc_4></s>'.
        image_size: (width, height) of the original frame.
        class_names: the YOLO model's class names; labels matching one get its index.
        region: the box a region task was prompted with; its label names unlabelled answers.

    Raises:
        UnknownTaskError: the task is not one of TASKS.
        FlorenceParseError: a box task whose answer holds location tokens but no complete
            label+box group, or whose location tokens are out of range.
    """
    check_task(task)
    kind = TASK_KINDS[task]
    body = strip_specials(text)
    locs = [int(v) for v in _LOC_RE.findall(body)]
    if any(v >= QUANTIZE_BINS for v in locs):
        raise FlorenceParseError(task, text, "location token out of range 0..999")
    answer = post_process(task, text, image_size)[task]
    if kind == "pure_text":
        return FlorenceResult(task, Detections.empty(), (), answer, answer=answer)
    labels, rows, polys = _instances(kind, answer)
    if not labels and not has_complete_group(task, text):
        if locs:
            raise FlorenceParseError(
                task, text, "location tokens without a complete label+box group"
            )
        if body.strip():
            raise FlorenceParseError(task, text, "no label+box group in a box task's answer")
    if region is not None:
        labels = [lb or region.label for lb in labels]
    k = 8 if kind == "ocr" else 4
    coords = np.array(rows, dtype=np.float32).reshape(-1, k)
    dets = _to_detections(labels, coords, class_names, image_size)
    return FlorenceResult(task, dets, tuple(labels), None, tuple(polys or ()), answer=answer)
