"""Which frame of an event is its best one (pure: no image, file or clock in here).

An object cut by the frame edge shows only part of itself, so any uncut frame beats a cut
one; among frames of the same kind the higher detection score wins (ties keep the earlier).
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Candidate:
    """One frame of an event: capture time (wall clock), box in pixels, score, cut or not."""

    ts: float
    box: Box
    score: float
    cut: bool


def is_cut(box: Box, width: int, height: int, margin: float) -> bool:
    """True when the box touches (within `margin` pixels) or crosses an edge of the frame."""
    x1, y1, x2, y2 = box
    return x1 <= margin or y1 <= margin or x2 >= width - margin or y2 >= height - margin


def better(new: Candidate, old: Candidate | None) -> bool:
    """True when `new` should replace `old` as the event's best frame."""
    if old is None:
        return True
    return (not new.cut, new.score) > (not old.cut, old.score)


def due(last_write: float | None, now: float, interval: float) -> bool:
    """True when a pending better frame may be written (and published) now."""
    return last_write is None or now - last_write >= interval


def padded_crop(box: Box, width: int, height: int, padding: float) -> tuple[int, int, int, int]:
    """Integer crop rectangle x1, y1, x2, y2: the box grown by `padding` of its size per side,
    clipped to the frame, at least one pixel wide and high."""
    x1, y1, x2, y2 = box
    px, py = (x2 - x1) * padding, (y2 - y1) * padding
    cx1 = min(max(int(x1 - px), 0), width - 1)
    cy1 = min(max(int(y1 - py), 0), height - 1)
    cx2 = max(min(int(round(x2 + px)), width), cx1 + 1)
    cy2 = max(min(int(round(y2 + py)), height), cy1 + 1)
    return cx1, cy1, cx2, cy2


def plan_eviction(entries: list[tuple[str, int]], quota: int, keep: set[str]) -> list[str]:
    """Keys to delete, oldest first, until the total size fits `quota`.

    `entries` are (key, bytes) oldest first; keys in `keep` (the file just written) are never
    chosen, so a single snapshot larger than the quota stays until the next one replaces it.
    """
    total = sum(size for _, size in entries)
    out = []
    for key, size in entries:
        if total <= quota:
            break
        if key in keep:
            continue
        out.append(key)
        total -= size
    return out
