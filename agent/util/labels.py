"""YOLO label lines: the one formatter the labeller, the fallback's captures and the gateway's
dataset builder share (boxes `class cx cy w h`, segments `class x1 y1 x2 y2 ...`). Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence


def yolo_label_line(
    class_id: int, x1: float, y1: float, x2: float, y2: float, width: int, height: int
) -> str:
    """One YOLO label line `class cx cy w h` for a pixel box, normalised to 0..1 (6 decimals).

    The box is clipped to the image first, so every value stays in 0..1 as YOLO (and the
    gateway's intake) require.

    Raises:
        ValueError: the image size is not positive, or the clipped box is empty.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    cx1, cx2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    cy1, cy2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f"box ({x1}, {y1}, {x2}, {y2}) is empty inside a {width}x{height} image")
    cx, cy = (cx1 + cx2) / 2 / width, (cy1 + cy2) / 2 / height
    bw, bh = (cx2 - cx1) / width, (cy2 - cy1) / height
    return f"{class_id} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


def yolo_segment_line(
    class_id: int, polygon: Sequence[tuple[float, float]], width: int, height: int
) -> str:
    """One Ultralytics segment label line `class x1 y1 x2 y2 ...` for a pixel polygon.

    Vertices are clipped to the image and normalised to 0..1 (6 decimals); consecutive
    duplicates (after rounding) are dropped. Pure: the gateway's dataset builder and the
    labeller share it.

    Args:
        class_id: dataset class index (>= 0).
        polygon: (x, y) vertices in pixels, in drawing order.
        width, height: image size in pixels.

    Raises:
        ValueError: non-positive image size, negative class, a non-finite vertex, fewer
            than 3 distinct vertices left, or no area left (all inside the image on one line,
            e.g. clipped onto its edge): nothing to train a mask on.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if class_id < 0:
        raise ValueError(f"class id must be >= 0, got {class_id}")
    points: list[tuple[str, str]] = []
    for x, y in polygon:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"polygon vertex ({x}, {y}) is not finite")
        p = (f"{min(max(x / width, 0.0), 1.0):.6f}", f"{min(max(y / height, 0.0), 1.0):.6f}")
        if not points or points[-1] != p:
            points.append(p)
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    if len(set(points)) < 3:
        raise ValueError(f"polygon has fewer than 3 distinct vertices inside the image: {polygon}")
    if _twice_area([(round(float(x) * 1e6), round(float(y) * 1e6)) for x, y in points]) == 0:
        raise ValueError(f"polygon has no area inside the image: {polygon}")
    return f"{class_id} " + " ".join(f"{x} {y}" for x, y in points)


def _twice_area(points: Sequence[tuple[int, int]]) -> int:
    """Twice the area of a closed polygon on an integer grid (shoelace, exact): 0 when every
    vertex lies on one line (e.g. clipped onto the image's edge)."""
    pairs = zip(points, [*points[1:], points[0]], strict=True)
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairs))


def box_polygon(x1: float, y1: float, x2: float, y2: float) -> list[tuple[float, float]]:
    """The four corners of a box, clockwise from the top left (a box as a segment polygon)."""
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def segment_line_to_box_line(line: str) -> str:
    """A normalised segment line `class x1 y1 ...` -> the box line `class cx cy w h` bounding it.

    Raises:
        ValueError: not a segment line (class, then an even number >= 6 of values in 0..1).
    """
    cls, coords = _split_segment_line(line)
    xs, ys = coords[0::2], coords[1::2]
    return yolo_label_line(cls, min(xs), min(ys), max(xs), max(ys), 1, 1)


def class_names(data: object) -> dict[int, str]:
    """The class names of a parsed data.yaml: `names:` as a list, or an {index: name} mapping
    (index keys may be written as strings).

    Raises:
        ValueError: no `names:`, an empty one, or an index that is not an integer.
    """
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise ValueError("no class names ('names:' list or mapping)")
    return {int(k): str(v) for k, v in names.items()}


def parse_box_line(line: str) -> tuple[int, float, float, float, float]:
    """A box line `class cx cy w h` -> (class, cx, cy, w, h) as written (ranges unchecked).

    Raises:
        ValueError: not five fields, or not numbers; the message says which (without the line,
            which callers add or withhold).
    """
    parts = line.split()
    if len(parts) != 5:
        raise ValueError(f"expected 5 fields (class cx cy w h), got {len(parts)}")
    try:
        cls = int(parts[0])
        cx, cy, w, h = (float(v) for v in parts[1:])
    except ValueError:
        raise ValueError("not numbers") from None
    return cls, cx, cy, w, h


def box_line_to_segment_line(line: str) -> str:
    """A normalised box line `class cx cy w h` -> its rectangle as a segment line.

    Raises:
        ValueError: not a box line of 5 values, or an empty box.
    """
    try:
        cls, cx, cy, w, h = parse_box_line(line)
    except ValueError as err:
        raise ValueError(f"not a YOLO box line ({err}): {line!r}") from None
    return yolo_segment_line(cls, box_polygon(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1, 1)


def _split_segment_line(line: str) -> tuple[int, list[float]]:
    parts = line.split()
    bad = ValueError(f"not a YOLO segment line (class x1 y1 x2 y2 x3 y3 ...): {line!r}")
    if len(parts) < 7 or len(parts) % 2 == 0:
        raise bad
    try:
        cls = int(parts[0])
        coords = [float(v) for v in parts[1:]]
    except ValueError:
        raise bad from None
    if cls < 0 or not all(0.0 <= v <= 1.0 for v in coords):
        raise bad
    return cls, coords
