"""Zone and line geometry (pure): reference point, point in polygon, line crossings.

Coordinates are image pixels (x right, y down). An object's reference point is the bottom
centre of its box (where it stands). A crossing is the segment from the previous reference
point to the current one intersecting the line segment: a fast object that jumps across in one
frame counts, a box that never reaches the line does not, and a line at the frame edge counts
like any other (nothing here depends on the frame size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Point = tuple[float, float]
Box = Sequence[float]
Direction = Literal["in", "out"]


def reference_point(box: Box) -> Point:
    """The bottom centre of an [x1, y1, x2, y2] box."""
    return ((float(box[0]) + float(box[2])) / 2.0, float(box[3]))


def in_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    """Whether `p` is inside `polygon` (even-odd rule; a point on an edge counts as inside)."""
    x, y = p
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if _on_segment(p, (x1, y1), (x2, y2)):
            return True
        if (y1 > y) != (y2 > y):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < x_cross:
                inside = not inside
    return inside


def _cross(o: Point, a: Point, b: Point) -> float:
    """The z component of (a - o) x (b - o) (its sign is the side of b relative to o->a)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    if _cross(a, b, p) != 0:
        return False
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def side(p: Point, a: Point, b: Point) -> int:
    """+1 when `p` is on the left of the directed line a->b as seen on screen (y down),
    -1 on its right, 0 on it. On screen, "left" of a line drawn left-to-right is above it."""
    c = _cross(a, b, p)
    # y points down, so the usual counter-clockwise (left) test flips sign
    return 0 if c == 0 else (-1 if c > 0 else 1)


def crossing(prev: Point, cur: Point, a: Point, b: Point) -> Direction | None:
    """The direction in which the move prev->cur crosses the segment a-b, or None.

    `in` = from the right of a->b to its left; `out` = the reverse. Both points must lie off
    the line (the caller passes the last reference point that was off it as `prev`), so an
    object that steps onto the line and back is not counted and one resting on it is counted
    once, when it leaves on the other side."""
    s_prev, s_cur = side(prev, a, b), side(cur, a, b)
    if s_prev == 0 or s_cur == 0 or s_prev == s_cur:
        return None
    # the move's endpoints must lie on opposite sides of (or on) the line a-b, and a and b on
    # opposite sides of (or on) the move's line: the two segments intersect
    m1, m2 = _cross(prev, cur, a), _cross(prev, cur, b)
    if (m1 > 0 and m2 > 0) or (m1 < 0 and m2 < 0):
        return None
    return "in" if s_cur > 0 else "out"
