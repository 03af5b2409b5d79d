"""Florence-2 prompts: the task token plus its input (a phrase or a region's location tokens).

transformers' processor expands the task token into the natural-language prompt; what it
needs from us is the input after the token: the phrase for grounding, open-vocabulary
detection and referring segmentation, or a region as four `<loc_N>` tokens for the
`<REGION_TO_...>` tasks. Region boxes come from the hard frame's YOLO detection (the least
confident one: the box YOLO is least sure of is the one worth refining). Pure, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.contracts.payloads import DetectionMessage
from agent.fallback.config import TASKS
from agent.fallback.postprocess import QUANTIZE_BINS, TASK_KINDS

PHRASE_TASKS = frozenset(
    {
        "<CAPTION_TO_PHRASE_GROUNDING>",
        "<OPEN_VOCABULARY_DETECTION>",
        "<REFERRING_EXPRESSION_SEGMENTATION>",
    }
)
"""Tasks whose input is a phrase (the YOLO class names unless one is given)."""

REGION_TASKS = frozenset(
    {
        "<REGION_TO_SEGMENTATION>",
        "<REGION_TO_CATEGORY>",
        "<REGION_TO_DESCRIPTION>",
        "<REGION_TO_OCR>",
    }
)
"""Tasks whose input is a box, written as four location tokens."""


class UnknownTaskError(ValueError):
    """A task name Florence-2 (as run by this product) does not know."""


@dataclass(frozen=True)
class Region:
    """A box to prompt a region task with.

    Attributes:
        box: (x1, y1, x2, y2) in pixels of the frame.
        label: its YOLO class name (labels a region answer that has none).
        class_id: its YOLO class index, or -1.
    """

    box: tuple[float, float, float, float]
    label: str = ""
    class_id: int = -1


def check_task(task: str) -> str:
    """Return `task` if this product runs it, else raise UnknownTaskError naming the known ones."""
    if task not in TASK_KINDS or task not in TASKS:
        raise UnknownTaskError(f"unknown Florence-2 task {task!r}; known: {', '.join(TASKS)}")
    return task


def quantize_box(box: tuple[float, float, float, float], size: tuple[int, int]) -> list[int]:
    """Pixel box -> four location bins, as transformers' `quantize` (floor, clamped to 0..999).

    Raises:
        ValueError: a non-finite coordinate or a non-positive image size.
    """
    w, h = size
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {w}x{h}")
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"region box {box} is not finite")
    per = np.array([w, h, w, h], dtype=np.float64) / QUANTIZE_BINS
    bins = np.floor(np.array(box, dtype=np.float64) / per).clip(0, QUANTIZE_BINS - 1)
    return [int(v) for v in bins]


def region_tokens(box: tuple[float, float, float, float], size: tuple[int, int]) -> str:
    """`<loc_x1><loc_y1><loc_x2><loc_y2>` for a pixel box in an image of (width, height)."""
    return "".join(f"<loc_{b}>" for b in quantize_box(box, size))


def pick_region(yolo: DetectionMessage) -> Region | None:
    """The least confident YOLO detection of a frame as a Region (None when it has none)."""
    if not yolo.detections:
        return None
    d = min(yolo.detections, key=lambda x: x.confidence if x.confidence is not None else 1.0)
    return Region(box=d.box, label=d.label, class_id=d.class_id)


def build_prompt(
    task: str,
    class_names: tuple[str, ...],
    *,
    phrase: str | None = None,
    region: Region | None = None,
    image_size: tuple[int, int] | None = None,
) -> str:
    """The processor prompt for `task`.

    Args:
        task: one of TASKS.
        class_names: YOLO class names; phrase tasks use 'a. b' when no `phrase` is given.
        phrase: explicit phrase for the phrase tasks.
        region: the box of a region task; `image_size` (width, height) is then required.

    Raises:
        UnknownTaskError: unknown task.
        ValueError: a phrase task without phrase or class names, a region task without a
            region or image size.
    """
    check_task(task)
    if task in PHRASE_TASKS:
        text = phrase if phrase is not None else ". ".join(class_names)
        if not text.strip():
            raise ValueError(f"{task} needs a phrase or class names")
        return task + text
    if task in REGION_TASKS:
        if region is None or image_size is None:
            raise ValueError(f"{task} needs a region box (a YOLO detection) and the image size")
        return task + region_tokens(region.box, image_size)
    return task


def job_prompt(
    task: str, class_names: tuple[str, ...], yolo: DetectionMessage
) -> tuple[str, Region | None]:
    """The fallback's prompt for a hard frame and the region it refines (region tasks: the
    least confident YOLO detection of `yolo`, in its frame's size; None otherwise).

    Raises:
        UnknownTaskError, ValueError: as `build_prompt` (a region task on a frame without
            detections among them).
    """
    region = pick_region(yolo) if task in REGION_TASKS else None
    size = (yolo.frame.width, yolo.frame.height)
    return build_prompt(task, class_names, region=region, image_size=size), region
