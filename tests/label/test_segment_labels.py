"""Ultralytics segment labels: the pure line formatter and converters the labeller and the
gateway's dataset builder share, and the labeller's segment label files."""

from __future__ import annotations

import pytest

from agent.label.plan import DatasetBox, label_text, unsegmented
from agent.util.labels import (
    box_line_to_segment_line,
    box_polygon,
    segment_line_to_box_line,
    yolo_segment_line,
)

TRIANGLE = ((10.0, 20.0), (90.0, 20.0), (50.0, 70.0))


def test_segment_line_is_normalised() -> None:
    """Vertices become `class x y x y ...` divided by the image size, 6 decimals."""
    assert (
        yolo_segment_line(2, TRIANGLE, 100, 80)
        == "2 0.100000 0.250000 0.900000 0.250000 0.500000 0.875000"
    )


def test_segment_line_clips_and_drops_repeats() -> None:
    """Outside vertices are clipped to the image; repeated and closing vertices are dropped."""
    poly = [(-10.0, -5.0), (-10.0, -5.0), (200.0, 0.0), (100.0, 100.0), (-10.0, -5.0)]
    assert (
        yolo_segment_line(0, poly, 100, 100)
        == "0 0.000000 0.000000 1.000000 0.000000 1.000000 1.000000"
    )


@pytest.mark.parametrize(
    ("poly", "size", "cls", "message"),
    [
        (((1.0, 1.0), (2.0, 2.0)), (10, 10), 0, "fewer than 3"),  # a line, no area
        (((-5.0, -5.0), (-1.0, -9.0), (-3.0, -2.0)), (10, 10), 0, "fewer than 3"),  # outside
        (((1.0, 12.0), (5.0, 15.0), (9.0, 11.0)), (10, 10), 0, "no area"),  # clipped onto an edge
        (((1.0, 1.0), (2.0, 2.0), (3.0, 3.0)), (10, 10), 0, "no area"),  # collinear
        (TRIANGLE, (0, 10), 0, "image size"),  # no image
        (TRIANGLE, (100, 100), -1, "class id"),  # unmatched label
        (((float("nan"), 1.0), (2.0, 2.0), (3.0, 1.0)), (10, 10), 0, "not finite"),
    ],
)
def test_segment_line_refuses(poly, size, cls: int, message: str) -> None:  # noqa: ANN001
    """Degenerate polygons, bad sizes and classes raise with the reason."""
    with pytest.raises(ValueError, match=message):
        yolo_segment_line(cls, poly, *size)


def test_box_and_segment_lines_convert() -> None:
    """A box line becomes its rectangle; a segment line becomes its bounding box line."""
    seg = box_line_to_segment_line("1 0.5 0.5 0.2 0.4")
    assert seg == "1 0.400000 0.300000 0.600000 0.300000 0.600000 0.700000 0.400000 0.700000"
    assert segment_line_to_box_line(seg) == "1 0.500000 0.500000 0.200000 0.400000"
    assert segment_line_to_box_line(yolo_segment_line(0, TRIANGLE, 100, 80)) == (
        "0 0.500000 0.562500 0.800000 0.625000"
    )
    for bad in ("1 0.5 0.5 0.2", "x 0.1 0.1 0.2 0.2 0.3 0.3", "1 0.1 0.1 0.2 0.2 0.3 1.5"):
        with pytest.raises(ValueError, match="not a YOLO"):
            segment_line_to_box_line(bad)
    assert box_polygon(1, 2, 3, 4) == [(1, 2), (3, 2), (3, 4), (1, 4)]


def test_label_text_segment_mode() -> None:
    """`segment` writes one line per polygon; boxes without an outline are left out, counted."""
    two_parts = DatasetBox(0, 0.9, 10, 20, 90, 70, (TRIANGLE, TRIANGLE[::-1]))
    bare = DatasetBox(1, 0.9, 10, 20, 90, 70)
    text = label_text([two_parts, bare], 100, 80, "segment")
    assert text.splitlines() == [
        "0 0.100000 0.250000 0.900000 0.250000 0.500000 0.875000",
        "0 0.500000 0.875000 0.900000 0.250000 0.100000 0.250000",
    ]
    assert unsegmented([two_parts, bare], 100, 80) == 1
    assert label_text([bare], 100, 80) == "1 0.500000 0.562500 0.800000 0.625000\n"
