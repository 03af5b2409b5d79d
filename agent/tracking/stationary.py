"""Stationary objects (pure): a track whose reference point stays within `radius_px` of an
anchor for `after_s` seconds is stationary until it moves beyond the radius again."""

from __future__ import annotations

import math
from dataclasses import dataclass

Point = tuple[float, float]


@dataclass
class Stillness:
    """One track's anchor: where it last started standing still, and since when."""

    anchor: Point
    since: float
    stationary: bool = False

    def observe(self, p: Point, ts: float, radius_px: float, after_s: float) -> bool:
        """Feed the reference point at `ts`; return whether the track is stationary now."""
        if math.dist(p, self.anchor) > radius_px:
            self.anchor, self.since, self.stationary = p, ts, False
        elif ts - self.since >= after_s:
            self.stationary = True
        return self.stationary
