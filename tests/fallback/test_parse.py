"""Torch-free parsing of Florence-2 answers, checked against known strings and transformers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.fallback.parse import (
    FlorenceParseError,
    UnknownTaskError,
    build_prompt,
    dequantize,
    match_class,
    parse_generation,
)

NAMES = ("person", "car")
SIZE = (768, 576)  # width, height

KNOWN = [
    # task, generated text, expected (label, class_id, box) rows, expected text
    (
        "<OD>",
        "</s><s>car<loc_100><loc_200><loc_300><loc_400>person<loc_0><loc_0><loc_999><loc_999></s>",
        [
            ("car", 1, (77.184, 115.488, 230.784, 230.688)),
            ("person", 0, (0.384, 0.288, 767.616, 575.712)),
        ],
        None,
    ),
    (
        "<OD>",
        "</s><s>cars<loc_10><loc_20><loc_30><loc_40><loc_50><loc_60><loc_70><loc_80></s>",
        [
            ("cars", 1, (8.064, 11.808, 23.424, 23.328)),
            ("cars", 1, (38.784, 34.848, 54.144, 46.368)),
        ],
        None,
    ),
    ("<OD>", "</s><s></s>", [], None),  # nothing found
    (
        "<DENSE_REGION_CAPTION>",
        "</s><s>a red bus<loc_1><loc_2><loc_3><loc_4></s>",
        [("a red bus", -1, (1.152, 1.44, 2.688, 2.592))],
        None,
    ),
    (
        "<CAPTION_TO_PHRASE_GROUNDING>",
        "</s><s>person<loc_500><loc_500><loc_600><loc_700></s>",
        [("person", 0, (384.384, 288.288, 461.184, 403.488))],
        None,
    ),
    (
        "<CAPTION_TO_PHRASE_GROUNDING>",
        "</s><s>the image<loc_0><loc_0><loc_999><loc_999></s>",
        [],
        None,
    ),
    (
        "<OCR_WITH_REGION>",
        "</s><s>STOP<loc_100><loc_100><loc_200><loc_100><loc_200><loc_150><loc_100><loc_150></s>",
        [("STOP", -1, (77.184, 57.888, 153.984, 86.688))],
        None,
    ),
    (
        "<CAPTION>",
        "</s><s>A person walking next to a car.</s>",
        [],
        "A person walking next to a car.",
    ),
]


@pytest.mark.parametrize(("task", "text", "rows", "caption"), KNOWN)
def test_known_strings(task: str, text: str, rows: list, caption: str | None) -> None:
    """Each task's answer parses into the expected labels, class ids and pixel boxes."""
    r = parse_generation(task, text, SIZE, NAMES)
    assert r.text == caption
    assert list(r.labels) == [row[0] for row in rows]
    assert r.detections.class_id.tolist() == [row[1] for row in rows]
    np.testing.assert_allclose(
        r.detections.xyxy, np.array([row[2] for row in rows]).reshape(-1, 4), atol=1e-3
    )
    assert all(math.isnan(c) for c in r.detections.confidence)


@pytest.mark.parametrize(
    "text",
    [
        "</s><s>car<loc_1><loc_2></s>",  # incomplete box
        "</s><s><loc_1><loc_2><loc_3><loc_4></s>",  # box without a label
        "</s><s>car<loc_1000><loc_2><loc_3><loc_4></s>",  # bin out of range
        "</s><s>just words and no boxes</s>",  # a box task answered with text
    ],
)
def test_unparsable(text: str) -> None:
    """Answers without a complete label+box group raise FlorenceParseError with the raw text."""
    with pytest.raises(FlorenceParseError) as info:
        parse_generation("<OD>", text, SIZE, NAMES)
    assert info.value.text == text


def test_unknown_task() -> None:
    """A task this product does not run is refused with the known ones listed."""
    with pytest.raises(UnknownTaskError, match="<OD>"):
        parse_generation("<SEGMENT_EVERYTHING>", "", SIZE, NAMES)
    with pytest.raises(UnknownTaskError):
        build_prompt("<SEGMENT_EVERYTHING>", NAMES)


def test_grounding_prompt_uses_class_names() -> None:
    """Grounding's phrase is the YOLO class names."""
    assert (
        build_prompt("<CAPTION_TO_PHRASE_GROUNDING>", NAMES)
        == "<CAPTION_TO_PHRASE_GROUNDING>person. car"
    )


def test_inverted_box_is_ordered_and_clipped() -> None:
    """A box with x2 < x1 comes out ordered; coordinates stay inside the frame."""
    r = parse_generation("<OD>", "car<loc_900><loc_10><loc_100><loc_5>", (100, 50), NAMES)
    x1, y1, x2, y2 = r.detections.xyxy[0].tolist()
    assert x1 < x2 and y1 < y2 and 0 <= x1 and x2 <= 100 and y2 <= 50


@pytest.mark.parametrize(
    ("label", "cid"),
    [("person", 0), ("Person", 0), ("persons", 0), ("cars", 1), ("buses", -1), ("truck", -1)],
)
def test_match_class(label: str, cid: int) -> None:
    """Labels map to YOLO classes case-insensitively, tolerating plurals."""
    assert match_class(label, NAMES) == cid


def test_dequantize_matches_transformers(tiny_model) -> None:
    """Our de-quantisation equals transformers' post_process_generation (which truncates)."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model, local_files_only=True)
    for task, text, _, _ in KNOWN:
        if task == "<CAPTION>":
            continue
        ref = proc.post_process_generation(text, task=task, image_size=SIZE)[task]
        ours = parse_generation(task, text, SIZE, NAMES)
        if task == "<OCR_WITH_REGION>":
            quads = np.array(ref["quad_boxes"], dtype=np.float32).reshape(-1, 8)
            ref_boxes = (
                np.stack(
                    [
                        quads[:, 0::2].min(1),
                        quads[:, 1::2].min(1),
                        quads[:, 0::2].max(1),
                        quads[:, 1::2].max(1),
                    ],
                    1,
                )
                if len(quads)
                else quads
            )
        else:
            ref_boxes = np.array(ref["bboxes"], dtype=np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(np.floor(ours.detections.xyxy), ref_boxes.reshape(-1, 4))
        assert list(ours.labels) == list(ref["labels"])


def test_dequantize_bin_centres() -> None:
    """Bin N maps to (N + 0.5) / 1000 of the size, x with width and y with height."""
    out = dequantize(np.array([[0, 0, 999, 999]]), (1000, 2000))
    np.testing.assert_allclose(out, [[0.5, 1.0, 999.5, 1999.0]])
