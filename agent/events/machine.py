"""The event state machine of one camera (pure: no clock, file or network).

Fed once per processed frame with the frame's tracked detections, it decides:
- `new` when a track has been seen `min_hits` times;
- `update` only on a meaningful change: zone entered or left, line crossed, stationary toggled
  (and a better snapshot, through `snapshot_changed`);
- `end` once a track has been missing for `max_disappeared_frames` frames or
  `max_disappeared_s` seconds, and for every open track at `end_all` (stop, model swap).
Every `new` gets exactly one `end`. Zone counts (confirmed tracks now in a zone, per label) and
line counts (crossings by confirmed tracks, per label and direction) change with it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from agent.contracts.events import EndReason, EventType, SnapshotRef
from agent.events.config import LineConfig, ZoneConfig
from agent.events.geometry import reference_point
from agent.events.zones import Crossing, Membership
from agent.tracking.stationary import Stillness

Box = tuple[float, float, float, float]
ZoneKey = tuple[str, str]  # (zone, label)
LineKey = tuple[str, str]  # (line, label)
ENDED_MEMORY = 4096
"""How many ended track ids a camera remembers, so a track the tracker revives after its
event ended does not open a second event with the same id."""


@dataclass(frozen=True)
class EventRules:
    min_hits: int
    max_disappeared_frames: int
    max_disappeared_s: float
    zone_inertia_frames: int
    stationary_s: float
    stationary_px: float
    zones: tuple[ZoneConfig, ...] = ()
    lines: tuple[LineConfig, ...] = ()


@dataclass(frozen=True)
class Observation:
    """One tracked detection of a frame."""

    track_id: int
    label: str
    score: float
    box: Box


@dataclass
class Track:
    track_id: int
    label: str
    start_ts: float
    last_ts: float
    score: float
    top_score: float
    box: Box
    stillness: Stillness
    hits: int = 1
    missed: int = 0
    open: bool = False  # its `new` was emitted
    stationary: bool = False
    zones: Membership = field(default_factory=Membership)
    snapshot: SnapshotRef | None = None  # set by snapshot_changed


@dataclass(frozen=True)
class EventDraft:
    """An event message without its envelope (device, boot, seq): the emitter adds those."""

    type: EventType
    ts: float
    track_id: int
    label: str
    start_ts: float
    end_ts: float | None
    score: float
    top_score: float
    box: Box
    zones_current: tuple[str, ...]
    zones_entered: tuple[str, ...]
    crossings: tuple[Crossing, ...]
    stationary: bool
    dwell_s: dict[str, float]
    snapshot: SnapshotRef | None
    end_reason: EndReason | None = None


@dataclass
class FrameOutcome:
    events: list[EventDraft] = field(default_factory=list)
    zone_counts: dict[ZoneKey, int] = field(default_factory=dict)  # the ones that changed
    line_counts: dict[LineKey, tuple[int, int]] = field(default_factory=dict)  # changed


def draft(t: Track, kind: EventType, ts: float, reason: EndReason | None = None) -> EventDraft:
    """The event message content of track `t` now."""
    ending = kind == EventType.END
    return EventDraft(
        type=kind,
        ts=ts,
        track_id=t.track_id,
        label=t.label,
        start_ts=t.start_ts,
        end_ts=t.last_ts if ending else None,
        score=t.score,
        top_score=t.top_score,
        box=t.box,
        zones_current=tuple(sorted(t.zones.inside)),
        zones_entered=tuple(t.zones.entered),
        crossings=tuple(t.zones.crossed),
        stationary=t.stationary,
        dwell_s=t.zones.dwell_at(t.last_ts if ending else ts),
        snapshot=t.snapshot,
        end_reason=reason,
    )


class CameraEvents:
    """The tracks, events and counts of one camera."""

    def __init__(self, rules: EventRules) -> None:
        self.rules = rules
        self.tracks: dict[int, Track] = {}
        self._ended: OrderedDict[int, None] = OrderedDict()
        self._zone_counts: dict[ZoneKey, int] = {}
        self.line_counts: dict[LineKey, tuple[int, int]] = {}
        self.last_frame_ts = float("-inf")

    def observe(self, ts: float, observations: list[Observation]) -> FrameOutcome:
        """Feed one frame (capture time `ts`) and its tracked detections."""
        out = FrameOutcome()
        self.last_frame_ts = ts
        seen: set[int] = set()
        for ob in observations:
            if ob.track_id in self._ended or ob.track_id in seen:
                continue
            seen.add(ob.track_id)
            self._observe_one(ob, ts, out)
        for t in list(self.tracks.values()):
            if t.track_id not in seen:
                t.missed += 1
                lost = t.missed >= self.rules.max_disappeared_frames
                if lost or ts - t.last_ts >= self.rules.max_disappeared_s:
                    self._end(t, ts, EndReason.LOST, out)
        self._recount_zones(out)
        return out

    def _observe_one(self, ob: Observation, ts: float, out: FrameOutcome) -> None:
        r = self.rules
        p = reference_point(ob.box)
        t = self.tracks.get(ob.track_id)
        if t is None:
            t = Track(ob.track_id, ob.label, ts, ts, ob.score, ob.score, ob.box, Stillness(p, ts))
            self.tracks[ob.track_id] = t
        else:
            t.hits += 1
        t.missed, t.last_ts, t.score, t.box = 0, ts, ob.score, ob.box
        t.top_score = max(t.top_score, ob.score)
        changed = t.zones.observe_zones(p, ts, r.zones, t.label, r.zone_inertia_frames)
        crossed = t.zones.observe_lines(p, ts, r.lines, t.label)
        still = t.stillness.observe(p, ts, r.stationary_px, r.stationary_s)
        changed = changed or bool(crossed) or still != t.stationary
        t.stationary = still
        if not t.open and t.hits >= r.min_hits:
            t.open = True
            out.events.append(draft(t, EventType.NEW, ts))
            self._count_crossings(t, t.zones.crossed, out)
        elif t.open:
            self._count_crossings(t, crossed, out)
            if changed:
                out.events.append(draft(t, EventType.UPDATE, ts))

    def _count_crossings(self, t: Track, crossed: list[Crossing], out: FrameOutcome) -> None:
        for c in crossed:
            key = (c.line, t.label)
            n_in, n_out = self.line_counts.get(key, (0, 0))
            if c.direction == "in":
                n_in += 1
            else:
                n_out += 1
            self.line_counts[key] = out.line_counts[key] = (n_in, n_out)

    def _end(self, t: Track, ts: float, reason: EndReason, out: FrameOutcome) -> None:
        del self.tracks[t.track_id]
        self._ended[t.track_id] = None
        if len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)
        if t.open:
            t.zones.leave_all(t.last_ts)
            out.events.append(draft(t, EventType.END, ts, reason))

    def expire(self, now: float) -> FrameOutcome:
        """The camera delivered no frame for `max_disappeared_s` (stalled, in backoff, a file at
        its end): end the tracks unseen that long (`lost`; `end_ts` = last seen)."""
        out = FrameOutcome()
        if now - self.last_frame_ts < self.rules.max_disappeared_s:
            return out
        for t in list(self.tracks.values()):
            if now - t.last_ts >= self.rules.max_disappeared_s:
                self._end(t, now, EndReason.LOST, out)
        self._recount_zones(out)
        return out

    def set_rules(self, rules: EventRules, ts: float) -> FrameOutcome:
        """Rules from a reload (zones or lines changed), from this frame on: tracks leave the
        zones that are gone (an `update` for an open event; their counts drop to 0) and forget
        the history of lines that are gone; events, ids and everything else carry on."""
        out = FrameOutcome()
        self.rules = rules
        zones, lines = {z.id for z in rules.zones}, {ln.id for ln in rules.lines}
        for t in self.tracks.values():
            if t.zones.forget_areas(zones, lines, ts) and t.open:
                out.events.append(draft(t, EventType.UPDATE, ts))
        self._recount_zones(out)
        return out

    def end_all(self, ts: float, reason: EndReason) -> FrameOutcome:
        """End every track now (clean stop, model swap): one `end` per open event."""
        out = FrameOutcome()
        for t in list(self.tracks.values()):
            self._end(t, ts, reason, out)
        self._recount_zones(out)
        return out

    def snapshot_changed(
        self, track_id: int, snapshot: SnapshotRef, ts: float
    ) -> EventDraft | None:
        """A better snapshot of an open event was kept: its `update` (None if not open)."""
        t = self.tracks.get(track_id)
        if t is None or not t.open:
            return None
        t.snapshot = snapshot
        return draft(t, EventType.UPDATE, ts)

    def _recount_zones(self, out: FrameOutcome) -> None:
        counts: dict[ZoneKey, int] = dict.fromkeys(self._zone_counts, 0)
        for t in self.tracks.values():
            if t.open:
                for zone in t.zones.inside:
                    counts[(zone, t.label)] = counts.get((zone, t.label), 0) + 1
        for key, n in counts.items():
            if self._zone_counts.get(key) != n:
                out.zone_counts[key] = n
        self._zone_counts = counts
