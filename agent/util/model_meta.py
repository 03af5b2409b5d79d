"""Ultralytics model metadata values, read the same way on the device and on the gateway."""

from __future__ import annotations


def imgsz_pair(value: object) -> tuple[int, int] | None:
    """The parsed `imgsz` literal (`[320, 320]`, `(320, 320)` or `320`) as (H, W); None when it
    is not one or two positive integers (a bool is not an integer here)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return None
    return int(value[0]), int(value[1])
