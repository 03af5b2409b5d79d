"""Florence-2's answers in the shape of transformers' `post_process_generation`, in numpy.

transformers' `Florence2Processor.post_process_generation(text, task, image_size)` returns
`{task: answer}` where the answer's shape depends on the task's *kind* (`TASK_KINDS`):

    pure_text                            'a caption'
    description_with_bboxes, bboxes      {'bboxes': [[x1, y1, x2, y2], ...], 'labels': [...]}
    phrase_grounding                     {'bboxes': [...], 'labels': [...]} (one per box)
    ocr                                  {'quad_boxes': [[x1, y1, ..., x4, y4], ...], 'labels'}
    polygons                             {'polygons': [[[x, y, x, y, ...], ...], ...],
                                          'labels': [...]} (instances -> polygons -> flat xy)
    description_with_bboxes_or_polygons  {'bboxes', 'bboxes_labels', 'polygons',
                                          'polygons_labels'}

`post_process` returns the same structure, built with the same regular expressions, but
without torch. One deliberate difference: coordinates are the bin centres as floats,
`(N + 0.5) * size / 1000`, where transformers truncates that value to an int (its values are
our values' `int()`; the tests compare them that way on every task).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt

QUANTIZE_BINS = 1000

TASK_KINDS: dict[str, str] = {
    "<OCR>": "pure_text",
    "<OCR_WITH_REGION>": "ocr",
    "<CAPTION>": "pure_text",
    "<DETAILED_CAPTION>": "pure_text",
    "<MORE_DETAILED_CAPTION>": "pure_text",
    "<OD>": "description_with_bboxes",
    "<DENSE_REGION_CAPTION>": "description_with_bboxes",
    "<CAPTION_TO_PHRASE_GROUNDING>": "phrase_grounding",
    "<REFERRING_EXPRESSION_SEGMENTATION>": "polygons",
    "<REGION_TO_SEGMENTATION>": "polygons",
    "<OPEN_VOCABULARY_DETECTION>": "description_with_bboxes_or_polygons",
    "<REGION_TO_CATEGORY>": "pure_text",
    "<REGION_TO_DESCRIPTION>": "pure_text",
    "<REGION_TO_OCR>": "pure_text",
    "<REGION_PROPOSAL>": "bboxes",
}
"""Florence-2 task -> kind of answer (transformers' `tasks_answer_post_processing_type`)."""

_LOC = r"<loc_(\d+)>"
_TEXT_RE = re.compile(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)")
_BOX_RE = re.compile(_LOC * 4)
_OCR_RE = re.compile(r"(.+?)" + _LOC * 8)
_PHRASE_RE = re.compile(r"([^<]+(?:<loc_\d+>){4,})")
_EMPTY_PHRASE_RE = re.compile(r"(?:(?:<loc_\d+>){4,})")
_POLY_TOKENS = r"(?:<loc_\d+>|<sep>|<poly>|</poly>)"
_POLY_PHRASE_RE = re.compile(r"([^<]+" + _POLY_TOKENS + r"{4,})")
_POLY_EMPTY_RE = re.compile(_POLY_TOKENS + r"{4,}")
_POLY_NAME_RE = re.compile(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_|<poly>)")
_POLY_INSTANCE_RE = re.compile(r"<poly>(.*?)</poly>")
_POLY_PART_RE = re.compile(r"((?:<loc_\d+>)+)(?:<sep>|$)")
_LOC_RE = re.compile(_LOC)

GROUP_PATTERNS: dict[str, re.Pattern[str]] = {
    "description_with_bboxes": _PHRASE_RE,
    "phrase_grounding": _PHRASE_RE,
    "bboxes": _EMPTY_PHRASE_RE,
    "ocr": _OCR_RE,
    "polygons": _POLY_EMPTY_RE,
}
"""Per answer kind: the pattern a complete label+location group matches (for error checks)."""


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


def _coords(bins: list[int], size: tuple[int, int]) -> list[float]:
    """Flat x, y, x, y ... bins -> flat pixel coordinates (floats, bin centres)."""
    arr = np.array(bins, dtype=np.int64).reshape(-1, 2)
    return [round(float(v), 4) for v in dequantize(arr, size).ravel()]


def _ascii(phrase: str) -> str:
    return phrase.encode("ascii", "ignore").decode("ascii")


def _boxes(text: str, size: tuple[int, int], allow_empty: bool) -> list[tuple[str, list[float]]]:
    """transformers' `parse_description_with_bboxes_from_text_and_spans`: (label, box) pairs."""
    out = []
    for phrase_text in (_EMPTY_PHRASE_RE if allow_empty else _PHRASE_RE).findall(text):
        phrase_text = phrase_text.replace("<ground>", "", 1).replace("<obj>", "", 1)
        m = _TEXT_RE.search(phrase_text)
        if not phrase_text or m is None:
            continue
        phrase = _ascii(m.group().strip())
        for b in _BOX_RE.finditer(phrase_text):
            out.append((phrase, _coords([int(g) for g in b.groups()], size)))
    return out


def _grounding(
    text: str, size: tuple[int, int], banned: frozenset[str]
) -> list[tuple[str, list[list[float]]]]:
    """transformers' phrase grounding: (phrase, boxes) pairs, banned phrases dropped."""
    out = []
    for phrase_text in _PHRASE_RE.findall(text):
        phrase_text = phrase_text.replace("<ground>", "", 1).replace("<obj>", "", 1)
        m = _TEXT_RE.search(phrase_text)
        if not phrase_text or m is None or m.group().strip() in banned:
            continue
        boxes = [_coords([int(g) for g in b.groups()], size) for b in _BOX_RE.finditer(phrase_text)]
        if boxes:
            out.append((_ascii(m.group().strip()), boxes))
    return out


def _polygons(
    text: str, size: tuple[int, int], allow_empty: bool
) -> list[tuple[str, list[list[float]]]]:
    """transformers' `parse_description_with_polygons_from_text_and_spans` (no box at start):
    (label, polygons) pairs, each polygon a flat [x, y, x, y, ...] list."""
    out = []
    for phrase_text in (_POLY_EMPTY_RE if allow_empty else _POLY_PHRASE_RE).findall(text):
        stripped = re.sub(r"^<loc_\d+>", "", phrase_text, count=1)
        m = _POLY_NAME_RE.search(stripped)
        if (not stripped and not allow_empty) or m is None:
            continue
        if "<poly>" in phrase_text and "</poly>" in phrase_text:
            parts = [p.group(1) for p in _POLY_INSTANCE_RE.finditer(phrase_text)]
        else:
            parts = [phrase_text]
        for part in parts:
            polys = []
            for pm in _POLY_PART_RE.finditer(part):
                bins = [int(v) for v in _LOC_RE.findall(pm.group(1))]
                polys.append(_coords(bins[: len(bins) // 2 * 2], size))
            if polys:
                out.append((m.group().strip(), polys))
    return out


def _answer(kind: str, body: str, size: tuple[int, int]) -> Any:  # noqa: ANN401 - task-shaped
    if kind == "description_with_bboxes" or kind == "bboxes":
        pairs = _boxes(body, size, allow_empty=kind == "bboxes")
        return {"bboxes": [b for _, b in pairs], "labels": [lb for lb, _ in pairs]}
    if kind == "phrase_grounding":
        groups = _grounding(body, size, frozenset({"the image"}))
        return {
            "bboxes": [b for _, boxes in groups for b in boxes],
            "labels": [lb for lb, boxes in groups for _ in boxes],
        }
    if kind == "ocr":
        rows = [(c.strip(), _coords([int(v) for v in q], size)) for c, *q in _OCR_RE.findall(body)]
        return {"quad_boxes": [q for _, q in rows], "labels": [c for c, _ in rows]}
    if kind == "polygons":
        inst = _polygons(body, size, allow_empty=True)
        return {"polygons": [p for _, p in inst], "labels": [lb for lb, _ in inst]}
    # description_with_bboxes_or_polygons
    if "<poly>" in body:
        inst, pairs = _polygons(body, size, allow_empty=False), []
    else:
        inst, pairs = [], _boxes(body, size, allow_empty=False)
    return {
        "bboxes": [b for _, b in pairs],
        "bboxes_labels": [lb for lb, _ in pairs],
        "polygons": [p for _, p in inst],
        "polygons_labels": [lb for lb, _ in inst],
    }


def post_process(task: str, text: str, image_size: tuple[int, int]) -> dict[str, Any]:
    """`{task: answer}` shaped as transformers' `post_process_generation` (float coordinates).

    Args:
        task: a key of TASK_KINDS (others raise KeyError; check with `parse.check_task`).
        text: decoded generation with special tokens kept.
        image_size: (width, height) of the original image.
    """
    kind = TASK_KINDS[task]
    if kind == "pure_text":
        return {task: text.replace("<s>", "").replace("</s>", "").strip()}
    return {task: _answer(kind, strip_specials(text), image_size)}


def has_complete_group(task: str, text: str) -> bool:
    """True when the answer holds at least one complete label+location group for its kind."""
    kind = TASK_KINDS[task]
    body = strip_specials(text)
    if kind == "description_with_bboxes_or_polygons":
        return bool(_POLY_PHRASE_RE.search(body) if "<poly>" in body else _PHRASE_RE.search(body))
    pattern = GROUP_PATTERNS.get(kind)
    return pattern is None or pattern.search(body) is not None
