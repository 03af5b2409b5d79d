"""Zone and line geometry (pure): reference point, polygon membership, segment crossings."""

from __future__ import annotations

import pytest

from agent.events.geometry import crossing, in_polygon, reference_point, side

GATE = ((0.0, 400.0), (768.0, 400.0))  # left to right: `in` is upwards on screen
SQUARE = [(0.0, 300.0), (768.0, 300.0), (768.0, 576.0), (0.0, 576.0)]


def test_reference_point_is_bottom_centre() -> None:
    """The point an object stands on: middle of the box's bottom edge."""
    assert reference_point((10, 20, 30, 200)) == (20.0, 200.0)


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((100, 400), True),  # well inside
        ((100, 299), False),  # just above the top edge
        ((768, 576), True),  # a corner counts as inside
        ((0, 450), True),  # on the left edge (the frame edge)
        ((800, 400), False),  # right of it
    ],
)
def test_in_polygon(point: tuple[float, float], inside: bool) -> None:
    """Even-odd membership with edges counted as inside."""
    assert in_polygon(point, SQUARE) is inside


def test_left_of_a_left_to_right_line_is_up_on_screen() -> None:
    """`in` is the left side of the line's direction: above a line drawn left to right."""
    assert side((100, 300), *GATE) == 1
    assert side((100, 500), *GATE) == -1
    assert side((100, 400), *GATE) == 0


def test_crossing_directions() -> None:
    """Moving up across a left-to-right line is `in`, moving down is `out`."""
    assert crossing((100, 450), (100, 350), *GATE) == "in"
    assert crossing((100, 350), (100, 450), *GATE) == "out"


def test_fast_object_jumping_across_counts() -> None:
    """A fast object that is on one side in one frame and far on the other in the next counts
    (the counting-band bug: Ultralytics PR #25492)."""
    assert crossing((300, 560), (360, 20), *GATE) == "in"


def test_box_that_never_touches_the_line_does_not_count() -> None:
    """A move that passes beside the segment's end crosses its extension, not the line
    (supervision #518: boxes counted without touching the line)."""
    short = ((300.0, 400.0), (500.0, 400.0))
    assert crossing((100, 450), (100, 350), *short) is None  # left of the segment
    assert crossing((550, 450), (700, 350), *short) is None  # right of it


def test_line_at_the_frame_edge_counts() -> None:
    """A line along the bottom edge of a 576-high frame counts an object leaving through it
    (supervision #1838: a line near the edge could never count)."""
    edge = ((0.0, 575.0), (768.0, 575.0))
    assert crossing((400, 560), (400, 576), *edge) == "out"


def test_stepping_onto_the_line_is_not_a_crossing() -> None:
    """Ending exactly on the line is not a crossing (the caller keeps the last off-line point)."""
    assert crossing((100, 450), (100, 400), *GATE) is None
