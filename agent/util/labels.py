"""YOLO label lines: the one formatter the labeller and the fallback's captures share."""

from __future__ import annotations


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
