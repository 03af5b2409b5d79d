"""One track's zone membership (with inertia) and line crossings (pure).

Membership flips only after `inertia` consecutive frames on the other side of a zone's edge,
so a box jittering on the edge does not enter and leave every frame. Crossings compare the
last reference point that was off the line with the current one (`geometry.crossing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.events.config import LineConfig, ZoneConfig
from agent.events.geometry import Direction, Point, crossing, in_polygon, side


@dataclass(frozen=True)
class Crossing:
    line: str
    direction: Direction
    ts: float


@dataclass
class Membership:
    """Per track: zones it is in, since when, how long it stayed, and its line history."""

    inside: dict[str, float] = field(default_factory=dict)  # zone -> entered at (ts)
    entered: list[str] = field(default_factory=list)  # every zone entered, first time order
    dwell: dict[str, float] = field(default_factory=dict)  # zone -> seconds of closed stays
    streak: dict[str, int] = field(default_factory=dict)  # zone -> frames against membership
    off_line: dict[str, Point] = field(default_factory=dict)  # line -> last point off it
    crossed: list[Crossing] = field(default_factory=list)

    def observe_zones(
        self, p: Point, ts: float, zones: tuple[ZoneConfig, ...], label: str, inertia: int
    ) -> bool:
        """Feed the reference point; return True when the set of zones changed."""
        changed = False
        for z in zones:
            if z.labels is not None and label not in z.labels:
                continue
            now_in = in_polygon(p, z.polygon)
            if now_in == (z.id in self.inside):
                self.streak[z.id] = 0
                continue
            self.streak[z.id] = self.streak.get(z.id, 0) + 1
            if self.streak[z.id] < inertia:
                continue
            self.streak[z.id] = 0
            changed = True
            if now_in:
                self.inside[z.id] = ts
                if z.id not in self.entered:
                    self.entered.append(z.id)
            else:
                self._leave(z.id, ts)
        return changed

    def forget_areas(self, zones: set[str], lines: set[str], ts: float) -> bool:
        """Only `zones` and `lines` exist now: leave the others (at `ts`) and forget their
        history; True when the track was in a zone that is gone."""
        gone = [z for z in self.inside if z not in zones]
        for z in gone:
            self._leave(z, ts)
        self.streak = {z: n for z, n in self.streak.items() if z in zones}
        self.off_line = {ln: p for ln, p in self.off_line.items() if ln in lines}
        return bool(gone)

    def _leave(self, zone: str, ts: float) -> None:
        since = self.inside.pop(zone)
        self.dwell[zone] = self.dwell.get(zone, 0.0) + max(ts - since, 0.0)

    def observe_lines(
        self, p: Point, ts: float, lines: tuple[LineConfig, ...], label: str
    ) -> list[Crossing]:
        """Feed the reference point; return the crossings this move made."""
        new: list[Crossing] = []
        for ln in lines:
            if ln.labels is not None and label not in ln.labels:
                continue
            a, b = ln.points
            prev = self.off_line.get(ln.id)
            if prev is not None:
                direction = crossing(prev, p, a, b)
                if direction is not None:
                    new.append(Crossing(ln.id, direction, ts))
            if side(p, a, b) != 0:
                self.off_line[ln.id] = p
        self.crossed.extend(new)
        return new

    def dwell_at(self, ts: float) -> dict[str, float]:
        """Seconds in each entered zone up to `ts` (open stays counted up to `ts`)."""
        out = {z: self.dwell.get(z, 0.0) for z in self.entered}
        for z, since in self.inside.items():
            out[z] = out.get(z, 0.0) + max(ts - since, 0.0)
        return {z: round(s, 3) for z, s in out.items()}

    def leave_all(self, ts: float) -> None:
        """The track ended: close every open stay at `ts`."""
        for zone in list(self.inside):
            self._leave(zone, ts)
