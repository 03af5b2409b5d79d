"""Pure labeller decisions: class maps, box selection, YOLO lines, sampling, splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.label.plan import (
    ClassMap,
    DatasetBox,
    FrameSampler,
    Split,
    frame_change,
    label_text,
    name_split,
    parse_class_map,
    select_boxes,
    time_split,
    unknown_labels,
    yolo_line,
)
from agent.label.teachers import LabelledBox
from agent.label.teachers.ssd_mobilenet import rows_to_boxes


@pytest.mark.parametrize(
    ("text", "names", "mapping"),
    [
        # identity shorthand keeps the order given
        ("person,car", ("person", "car"), {"person": 0, "car": 1}),
        # renaming: two teacher labels fold into one dataset class
        ("person=person,car=car,truck=car", ("person", "car"), {"person": 0, "car": 1, "truck": 1}),
        # class ids follow first appearance of the dataset class, not of the teacher label
        ("truck=vehicle,person=human,car=vehicle", ("vehicle", "human"),
         {"truck": 0, "person": 1, "car": 0}),
        # spaces around names are ignored; multi-word COCO labels survive
        (" traffic light = light ", ("light",), {"traffic light": 0}),
    ],
)  # fmt: skip
def test_parse_class_map_accepts(
    text: str, names: tuple[str, ...], mapping: dict[str, int]
) -> None:
    """A class spec parses into dataset names in first-appearance order and the label map."""
    parsed = parse_class_map(text)
    assert parsed.names == names
    assert parsed.mapping == mapping


@pytest.mark.parametrize(
    "text",
    [
        "",  # nothing at all
        "person,,car",  # empty item
        "person=",  # empty target
        "=car",  # empty teacher label
        "car=car,car=vehicle",  # teacher label mapped twice
    ],
)
def test_parse_class_map_rejects(text: str) -> None:
    """A malformed class spec raises ValueError naming the problem."""
    with pytest.raises(ValueError, match="class|mapped twice"):
        parse_class_map(text)


def test_class_map_spec_round_trips() -> None:
    """ClassMap.spec() parses back into the same map."""
    cm = parse_class_map("person,truck=car,car")
    assert parse_class_map(cm.spec()) == cm


@pytest.mark.parametrize(
    ("vocabulary", "expected"),
    [
        (frozenset({"person", "car"}), ["persn"]),  # closed vocabulary: the typo is reported
        (None, []),  # open vocabulary (Florence-2): every label is possible
    ],
)
def test_unknown_labels(vocabulary: frozenset[str] | None, expected: list[str]) -> None:
    """Labels the teacher cannot emit are listed, none for open-vocabulary teachers."""
    assert unknown_labels(parse_class_map("persn,car"), vocabulary) == expected


CM = ClassMap(names=("person", "car"), mapping={"person": 0, "car": 1, "truck": 1})


def test_select_boxes_filters_renames_and_thresholds() -> None:
    """Unwanted labels and low scores are dropped; wanted labels get dataset ids."""
    boxes = [
        LabelledBox("person", 0.9, 0, 0, 10, 20),
        LabelledBox("dog", 0.99, 0, 0, 10, 10),  # not in the map
        LabelledBox("truck", 0.6, 50, 50, 90, 80),
        LabelledBox("person", 0.3, 100, 100, 110, 120),  # below threshold
    ]
    out = select_boxes(boxes, CM, min_confidence=0.5)
    assert [(b.class_id, b.confidence) for b in out] == [(0, 0.9), (1, 0.6)]


def test_select_boxes_merges_duplicates_after_renaming() -> None:
    """COCO 'car' and 'truck' on one object become a single 'car' box, the stronger one."""
    boxes = [LabelledBox("truck", 0.55, 10, 10, 50, 40), LabelledBox("car", 0.7, 11, 10, 50, 41)]
    out = select_boxes(boxes, CM, min_confidence=0.5)
    assert len(out) == 1 and out[0].confidence == 0.7


def test_select_boxes_keeps_overlapping_boxes_of_other_classes() -> None:
    """Overlap only merges boxes of the same dataset class."""
    boxes = [LabelledBox("person", 0.9, 10, 10, 50, 40), LabelledBox("car", 0.8, 10, 10, 50, 40)]
    assert len(select_boxes(boxes, CM, min_confidence=0.5)) == 2


def test_select_boxes_passes_unscored_boxes() -> None:
    """A NaN confidence (teacher without scores) is kept whatever the threshold."""
    out = select_boxes([LabelledBox("person", math.nan, 0, 0, 5, 5)], CM, min_confidence=0.9)
    assert len(out) == 1


@pytest.mark.parametrize(
    ("box", "size", "line"),
    [
        # centred box, exact fractions
        (DatasetBox(0, 0.9, 25, 50, 75, 150), (100, 200), "0 0.500000 0.500000 0.500000 0.500000"),
        # box sticking out of the image is clipped to it first
        (DatasetBox(1, 0.9, -10, -10, 50, 100), (100, 200), "1 0.250000 0.250000 0.500000 0.500000"),  # noqa: E501
        # the whole image
        (DatasetBox(1, 0.9, 0, 0, 640, 480), (640, 480), "1 0.500000 0.500000 1.000000 1.000000"),
    ],
)  # fmt: skip
def test_yolo_line(box: DatasetBox, size: tuple[int, int], line: str) -> None:
    """Boxes in pixels become normalised `class cx cy w h` lines."""
    assert yolo_line(box, *size) == line


@pytest.mark.parametrize(
    ("box", "size"),
    [
        (DatasetBox(0, 0.9, 120, 0, 150, 10), (100, 100)),  # entirely right of the image
        (DatasetBox(0, 0.9, 10, 10, 10, 20), (100, 100)),  # zero width
        (DatasetBox(0, 0.9, 10, 10, 20, 20), (0, 100)),  # image without width
    ],
)
def test_yolo_line_rejects_empty_boxes(box: DatasetBox, size: tuple[int, int]) -> None:
    """A box with no area inside the image raises instead of writing a bad line."""
    with pytest.raises(ValueError):
        yolo_line(box, *size)


@given(
    st.lists(
        st.tuples(
            st.floats(-50, 700), st.floats(-50, 700), st.floats(1, 300), st.floats(1, 300)
        ).filter(lambda t: t[0] + t[2] > 1 and t[1] + t[3] > 1 and t[0] < 639 and t[1] < 479),
        max_size=20,
    )
)
def test_label_text_lines_are_valid_yolo(raw: list[tuple[float, float, float, float]]) -> None:
    """Every line of a label file has an integer class and four numbers in 0..1."""
    boxes = [DatasetBox(1, 0.9, x, y, x + w, y + h) for x, y, w, h in raw]
    text = label_text(boxes, 640, 480)
    lines = text.splitlines()
    assert len(lines) == len(boxes)
    for line in lines:
        cls, *nums = line.split()
        assert cls == "1" and len(nums) == 4
        assert all(0.0 <= float(v) <= 1.0 for v in nums)


def test_label_text_empty_for_no_boxes() -> None:
    """An image without boxes gets an empty label file (a YOLO background image)."""
    assert label_text([], 640, 480) == ""


def _thumb(level: int) -> np.ndarray:
    return np.full((48, 64), level, dtype=np.uint8)


def test_frame_change_is_mean_absolute_difference() -> None:
    """Two flat thumbnails differ by the difference of their levels."""
    assert frame_change(_thumb(10), _thumb(13)) == 3.0


def test_sampler_keeps_every_nth_frame() -> None:
    """With dedup off, exactly the frames on the every-Nth grid are kept."""
    sampler = FrameSampler(every=3, min_change=0.0)
    kept = [i for i in range(10) if sampler.offer(i, _thumb(0))]
    assert kept == [0, 3, 6, 9]


def test_sampler_skips_near_duplicates_of_the_last_kept_frame() -> None:
    """A grid frame too close to the last kept one is skipped; change accumulates."""
    sampler = FrameSampler(every=1, min_change=2.0)
    levels = [0, 1, 2, 3, 10, 10]  # 1 is close to 0; 2 is 2 away from 0 -> kept; 3 close to 2
    kept = [i for i, lv in enumerate(levels) if sampler.offer(i, _thumb(lv))]
    assert kept == [0, 2, 4]


@pytest.mark.parametrize(("every", "min_change"), [(0, 0.0), (1, -1.0)])
def test_sampler_rejects_bad_settings(every: int, min_change: float) -> None:
    """Zero stride or negative threshold raises ValueError."""
    with pytest.raises(ValueError):
        FrameSampler(every=every, min_change=min_change)


def test_time_split_holds_out_the_end_with_a_gap() -> None:
    """The last 20 % is val; frames within the gap before it are dropped."""
    indices = list(range(0, 100, 4))  # 25 frames
    split = time_split(indices, val_fraction=0.2, gap=8)
    val = [i for i, s in split.items() if s is Split.VAL]
    dropped = [i for i, s in split.items() if s is None]
    assert val == [80, 84, 88, 92, 96]
    assert dropped == [72, 76]


@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=200, unique=True).map(sorted),
    st.floats(0.01, 0.9),
    st.integers(0, 50),
)
def test_time_split_never_leaks(indices: list[int], fraction: float, gap: int) -> None:
    """Every train frame is more than `gap` frames before every val frame."""
    split = time_split(indices, fraction, gap)
    train = [i for i, s in split.items() if s is Split.TRAIN]
    val = [i for i, s in split.items() if s is Split.VAL]
    assert val, "a positive fraction holds out at least one frame"
    if train:
        assert max(train) + gap < min(val)


def test_time_split_without_val() -> None:
    """Fraction 0 puts every frame in train."""
    assert set(time_split([0, 5, 10], 0.0, 3).values()) == {Split.TRAIN}


@pytest.mark.parametrize(
    ("indices", "fraction", "gap"),
    [
        ([0, 5, 5], 0.2, 0),  # repeated index
        ([5, 0], 0.2, 0),  # decreasing
        ([0, 5], 1.0, 0),  # nothing left for training
        ([0, 5], 0.2, -1),  # negative gap
    ],
)
def test_time_split_rejects(indices: list[int], fraction: float, gap: int) -> None:
    """Unordered indices or out-of-range settings raise ValueError."""
    with pytest.raises(ValueError):
        time_split(indices, fraction, gap)


def test_name_split_is_stable_and_roughly_proportional() -> None:
    """The same name always lands in the same split, and about the asked share is val."""
    names = [f"img_{i:05d}" for i in range(2000)]
    first = [name_split(n, 0.2) for n in names]
    assert first == [name_split(n, 0.2) for n in names]
    share = sum(s is Split.VAL for s in first) / len(names)
    assert 0.15 < share < 0.25


def test_ssd_rows_to_boxes() -> None:
    """SSD output rows become COCO-labelled pixel boxes; unknown ids and low scores drop."""
    rows = np.array(
        [
            [0, 1, 0.9, 0.1, 0.2, 0.3, 0.4],  # person
            [0, 3, 0.8, -0.1, 0.5, 0.2, 1.2],  # car sticking out: clipped to the image
            [0, 12, 0.9, 0.1, 0.1, 0.2, 0.2],  # id 12 is unused in the COCO map
            [0, 1, 0.01, 0.1, 0.1, 0.2, 0.2],  # below the raw floor
        ],
        dtype=np.float32,
    )
    boxes = rows_to_boxes(rows, width=200, height=100, min_score=0.05)
    assert [b.label for b in boxes] == ["person", "car"]
    assert boxes[0].x1 == pytest.approx(20) and boxes[0].y2 == pytest.approx(40)
    assert (boxes[1].x1, boxes[1].y2) == (0.0, 100.0)
