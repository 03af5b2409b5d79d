"""Torch-free parsing of Florence-2's generated text into detections.

Florence-2 writes boxes as location tokens `<loc_N>`, N in [0, 999], each a bin of 1/1000 of
the image width (x) or height (y). transformers' `post_process_generation` de-quantises them
with torch; this module does the same in numpy (bin centre: `(N + 0.5) * size / 1000`) and
follows the same regular expressions, so both runtimes share one parser. Florence-2 gives no
scores: every confidence is NaN (published as `confidence: null`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.fallback.config import TASKS
from agent.types import Detections

QUANTIZE_BINS = 1000

# Florence-2 task -> kind of answer (the subset of transformers' table this product runs).
TASK_KINDS: dict[str, str] = {
    "<OD>": "description_with_bboxes",
    "<DENSE_REGION_CAPTION>": "description_with_bboxes",
    "<CAPTION_TO_PHRASE_GROUNDING>": "phrase_grounding",
    "<OCR_WITH_REGION>": "ocr",
    "<CAPTION>": "pure_text",
}

_PHRASE_RE = re.compile(r"([^<]+(?:<loc_\d+>){4,})")
_TEXT_RE = re.compile(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)")
_BOX_RE = re.compile(r"<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>")
_OCR_RE = re.compile(r"(.+?)" + r"<loc_(\d+)>" * 8)
_LOC_RE = re.compile(r"<loc_(\d+)>")
_BANNED_GROUNDING = frozenset({"the image"})


class FlorenceParseError(ValueError):
    """Florence-2's output does not parse for the task; `text` is the raw output."""

    def __init__(self, task: str, text: str, why: str) -> None:
        self.task = task
        self.text = text
        super().__init__(f"cannot parse Florence-2 output for {task}: {why}: {text[:200]!r}")


class UnknownTaskError(ValueError):
    """A task name Florence-2 (as run by this product) does not know."""


@dataclass(frozen=True)
class FlorenceResult:
    """Parsed answer of one Florence-2 run.

    Attributes:
        task: the task token, e.g. '<OD>'.
        detections: n boxes in pixels of the original frame; confidence (n,) all NaN;
            class_id (n,) index into the YOLO class names or -1.
        labels: (n,) Florence-2's label text for each box.
        text: caption / the raw answer text for text tasks; None for box tasks.
    """

    task: str
    detections: Detections
    labels: tuple[str, ...]
    text: str | None


def check_task(task: str) -> str:
    """Return `task` if this product runs it, else raise UnknownTaskError naming the known ones."""
    if task not in TASK_KINDS:
        raise UnknownTaskError(f"unknown Florence-2 task {task!r}; known: {', '.join(TASKS)}")
    return task


def dequantize(bins: npt.NDArray[np.int64], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Location bins -> pixel coordinates at the bin centres.

    Args:
        bins: (n, k) integer bins, k even, alternating x and y (k=4 boxes, k=8 quads).
        size: (width, height) of the original image.

    Returns:
        (n, k) float32 pixel coordinates.
    """
    w, h = size
    scale = np.tile(np.array([w, h], dtype=np.float64) / QUANTIZE_BINS, bins.shape[1] // 2)
    return ((bins.astype(np.float64) + 0.5) * scale).astype(np.float32)


def strip_specials(text: str) -> str:
    """Remove `<s>`, `</s>` and `<pad>` as transformers' post-processor does."""
    return text.replace("<s>", "").replace("</s>", "").replace("<pad>", "")


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


def _phrase_boxes(text: str, banned: frozenset[str]) -> list[tuple[str, list[list[int]]]]:
    out = []
    for phrase_text in _PHRASE_RE.findall(text):
        phrase_text = phrase_text.replace("<ground>", "", 1).replace("<obj>", "", 1)
        m = _TEXT_RE.search(phrase_text)
        if not m:
            continue
        phrase = m.group().strip().encode("ascii", "ignore").decode("ascii")
        if phrase in banned:
            continue
        boxes = [[int(g) for g in b.groups()] for b in _BOX_RE.finditer(phrase_text)]
        if boxes:
            out.append((phrase, boxes))
    return out


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


def parse_generation(
    task: str, text: str, image_size: tuple[int, int], class_names: tuple[str, ...]
) -> FlorenceResult:
    """Parse Florence-2's decoded output (special tokens kept) for `task`.

    Args:
        task: one of TASKS.
        text: decoded generation, e.g. '</s><s>car<loc_1><loc_2><loc_3><loc_4></s>'.
        image_size: (width, height) of the original frame.
        class_names: the YOLO model's class names; labels matching one get its index.

    Raises:
        UnknownTaskError: the task is not one of TASKS.
        FlorenceParseError: a box task whose answer holds location tokens but no complete
            label+box group, or whose location tokens are out of range.
    """
    kind = TASK_KINDS.get(task)
    if kind is None:
        check_task(task)
    body = strip_specials(text)
    locs = [int(v) for v in _LOC_RE.findall(body)]
    if any(v >= QUANTIZE_BINS for v in locs):
        raise FlorenceParseError(task, text, "location token out of range 0..999")
    if kind == "pure_text":
        return FlorenceResult(task, Detections.empty(), (), body.strip())
    labels: list[str] = []
    rows: list[list[int]] = []
    if kind == "ocr":
        for content, *quad in _OCR_RE.findall(body):
            labels.append(content.strip())
            rows.append([int(v) for v in quad])
        k = 8
    else:
        banned = _BANNED_GROUNDING if kind == "phrase_grounding" else frozenset()
        for phrase, boxes in _phrase_boxes(body, banned):
            for box in boxes:
                labels.append(phrase)
                rows.append(box)
        k = 4
    complete = (_OCR_RE if kind == "ocr" else _PHRASE_RE).search(body) is not None
    if not rows and not complete and locs:
        raise FlorenceParseError(task, text, "location tokens without a complete label+box group")
    if not rows and not complete and body.strip():
        raise FlorenceParseError(task, text, "no label+box group in a box task's answer")
    coords = dequantize(np.array(rows, dtype=np.int64).reshape(-1, k), image_size)
    dets = _to_detections(labels, coords, class_names, image_size)
    return FlorenceResult(task, dets, tuple(labels), None)


def build_prompt(task: str, class_names: tuple[str, ...]) -> str:
    """The processor prompt for `task`; grounding gets the YOLO class names as its phrase."""
    check_task(task)
    if task == "<CAPTION_TO_PHRASE_GROUNDING>":
        if not class_names:
            raise ValueError("<CAPTION_TO_PHRASE_GROUNDING> needs class names for its phrase")
        return task + ". ".join(class_names)
    return task
