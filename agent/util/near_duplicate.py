"""The near-duplicate rule shared by `edge-agent label` and `edge-gateway dataset build`.

Two frames are near-duplicates when their grey thumbnails of `THUMB_SIZE` differ by less than
a threshold in mean absolute grey level (0..255). Frames are offered in time order and each one
is compared with the last frame *kept*, so a slow drift is still sampled. Thumbnails are
passed as raw bytes (row-major, one byte per pixel): the labeller makes them with OpenCV, the
gateway (which never loads OpenCV) with Pillow. Pure standard library, no numpy.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

THUMB_SIZE = (64, 48)
"""(width, height) of the grey thumbnails compared by the near-duplicate check."""

DEFAULT_MIN_CHANGE = 1.0
"""The labeller's default threshold (mean absolute grey level, 0..255)."""


def frame_change(a: bytes, b: bytes) -> float:
    """Mean absolute difference (0..255) of two same-size grey thumbnails given as bytes."""
    if len(a) != len(b):
        raise ValueError(f"thumbnails differ in size: {len(a)} vs {len(b)} bytes")
    if not a:
        return 0.0
    return sum(map(abs, map(operator.sub, a, b))) / len(a)


@dataclass
class NearDuplicateFilter:
    """Keeps a frame unless it differs from the last kept one by less than `min_change`.

    `min_change` 0 keeps every frame. One filter per camera (or video): frames must be offered
    in time order.
    """

    min_change: float
    _last: bytes | None = None

    def __post_init__(self) -> None:
        if self.min_change < 0:
            raise ValueError(f"min_change must be >= 0, got {self.min_change}")

    def offer(self, thumb: bytes) -> bool:
        """Return True to keep the frame with grey thumbnail `thumb` (and remember it)."""
        if self._last is not None and frame_change(self._last, thumb) < self.min_change:
            return False
        self._last = thumb
        return True

    def remember(self, thumb: bytes) -> None:
        """Keep a frame whatever it looks like (e.g. one already in a held-out set)."""
        self._last = thumb
