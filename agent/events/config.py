"""Config models of events (`events:`) and of a camera's zones and lines (`cameras[].zones`,
`cameras[].lines`). Pure pydantic: `agent.sources.config` imports the zone/line models."""

from __future__ import annotations

from pydantic import Field, field_validator

from agent.contracts.ids import SafeId
from agent.util.models import FrozenModel

Point = tuple[float, float]


class ZoneConfig(FrozenModel):
    id: SafeId
    """Zone id: one MQTT topic level."""
    polygon: list[Point] = Field(min_length=3)
    """Corners [[x, y], ...] in pixels of the camera frame (at least 3). An object is in the zone
    when the bottom centre of its box is inside."""
    labels: list[str] | None = Field(None, min_length=1)
    """Only these class names count here (default: all)."""

    @field_validator("polygon")
    @classmethod
    def _distinct_corners(cls, value: list[Point]) -> list[Point]:
        if len(set(value)) < 3:
            raise ValueError("a zone polygon needs at least 3 distinct points")
        return value


class LineConfig(FrozenModel):
    id: SafeId
    """Line id: one MQTT topic level."""
    points: tuple[Point, Point]
    """The segment [[x1, y1], [x2, y2]] in pixels. Walking from the first point to the second, `in`
    is a crossing from the right side to the left side (in image coordinates, y down), `out` the
    other way."""
    labels: list[str] | None = Field(None, min_length=1)
    """Only these class names count here (default: all)."""

    @field_validator("points")
    @classmethod
    def _distinct_points(cls, value: tuple[Point, Point]) -> tuple[Point, Point]:
        if value[0] == value[1]:
            raise ValueError("a line needs 2 distinct points")
        return value


def check_unique_ids(zones: list[ZoneConfig], lines: list[LineConfig]) -> None:
    """Raise ValueError naming zone or line ids used twice on one camera."""
    for kind, ids in (("zone", [z.id for z in zones]), ("line", [ln.id for ln in lines])):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"{kind} ids must be unique per camera; repeated: {', '.join(dupes)}")


class EventsConfig(FrozenModel):
    enabled: bool = False
    """Publish tracked-object events and zone/line counts (needs `tracking.enabled`)."""
    min_hits: int = Field(3, ge=1)
    """Frames in which an object must carry its track id before its `new` event (counted after the
    tracker's own `tracking.min_hits`)."""
    max_disappeared_frames: int = Field(15, ge=1)
    """End an event after this many processed frames without it..."""
    max_disappeared_s: float = Field(3.0, gt=0)
    """...or after this many seconds without it, whichever is first."""
    zone_inertia_frames: int = Field(2, ge=1)
    """Consecutive frames inside (outside) a zone before an object counts as entered (left): boxes
    jittering on a zone edge do not flap."""
    persist_open: bool = True
    """Keep open events in `<state_dir>/events-open.json` so that the next start closes them with
    `end_reason: restart` after a crash."""
