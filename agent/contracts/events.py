"""The tracked-object event (`edge.event/1`) and the retained zone/line count payloads.

An event is the life of one tracked object on one camera: exactly one `new`, zero or more
`update`s (only on a meaningful change), exactly one `end`. Events travel on their own outbox
stream `events` (per camera and boot, `seq` +1 per message), so they have the delivery
guarantees of detections (docs/delivery.md). Models here never touch disk or network.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from agent.contracts.ids import SafeId
from agent.contracts.payloads import Payload
from agent.contracts.streams import BootId, Stream

EVENT_SCHEMA = "edge.event/1"

Box = tuple[float, float, float, float]


class EventType(str, Enum):
    NEW = "new"
    UPDATE = "update"
    END = "end"


class EndReason(str, Enum):
    """Why an event ended."""

    LOST = "lost"
    """Not detected for `events.max_disappeared_frames` frames or `max_disappeared_s` seconds."""
    STOP = "stop"
    """The daemon stopped cleanly."""
    MODEL_SWAP = "model_swap"
    """A new model was installed: its tracks start afresh."""
    RESTART = "restart"
    """Left open by a daemon that died (kill -9, power loss); closed by the next start."""


class LineCrossing(Payload):
    line: SafeId
    """Line id from the camera config."""
    direction: Literal["in", "out"]
    """`in`: from the right of the line's direction (first point -> second) to its left; `out`: the
    other way."""
    ts: str
    """Capture time of the frame that crossed, UTC RFC 3339 ms."""


class SnapshotRef(Payload):
    ts: str
    """Capture time of the snapshot frame, UTC RFC 3339 ms."""
    box: Box
    """The object's box in that frame, [x1, y1, x2, y2] pixels."""
    score: float = Field(ge=0, le=1)
    """The detection's score in that frame."""
    path: str
    """JPEG file of the snapshot, relative to the state dir."""


class EventMessage(Payload):
    """One message per event change, on edge/<device>/cameras/<camera>/events (QoS 1)."""

    schema_: Literal["edge.event/1"] = Field(EVENT_SCHEMA, alias="schema")
    """Payload schema id and version."""
    type: EventType
    """`new`, `update` or `end`."""
    id: str = Field(pattern=r"^[0-9a-f]{8,64}-[a-z0-9][a-z0-9-]{0,62}-[0-9]+$")
    """Event id `<boot_id>-<camera>-<track_id>`: unique per boot, camera and track. A `restart` end
    carries the id (and so the boot) of the event it closes."""
    device: SafeId
    """Device id."""
    camera: SafeId
    """Camera id."""
    boot_id: BootId
    """The boot of the daemon that published this message (the stream's boot; differs from the id's
    boot only on a `restart` end)."""
    stream: Literal[Stream.EVENTS] = Stream.EVENTS
    """Always `events`."""
    seq: int = Field(ge=0)
    """Per stream (boot, camera, `events`): starts at 0 and grows by exactly 1 per message; a gap
    means a lost message."""
    ts: str
    """Capture time of the frame that caused this message (UTC)."""
    label: str
    """Class name of the object (at confirmation)."""
    track_id: int = Field(ge=0)
    """The tracker's id, as in the detection messages."""
    start_ts: str
    """Capture time of the first frame of the track."""
    end_ts: str | None = None
    """Last time the object was seen; set on `end`."""
    score: float = Field(ge=0, le=1)
    """Score of the latest detection."""
    top_score: float = Field(ge=0, le=1)
    """Best score over the event."""
    box: Box
    """Latest box [x1, y1, x2, y2] in pixels of the frame."""
    zones_current: list[SafeId]
    """Zones the object is in now."""
    zones_entered: list[SafeId]
    """Every zone entered during the event."""
    lines_crossed: list[LineCrossing]
    """Every line crossing, in order."""
    stationary: bool
    """Not moved beyond `tracking.stationary_px` for `tracking.stationary_s`."""
    dwell_s: dict[str, float]
    """Seconds spent in each zone entered (so far; final on `end`)."""
    snapshot: SnapshotRef | None = None
    """Best frame of the event, if kept."""
    end_reason: EndReason | None = None
    """Why the event ended; on `end` only."""
    oldest_unacked_seq: int | None = Field(None, ge=0)
    """Low-water mark of the `events` stream, as in detection messages."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> EventMessage:
        ending = self.type == EventType.END
        if ending != (self.end_reason is not None) or ending != (self.end_ts is not None):
            raise ValueError("end_reason and end_ts are set exactly on `end` events")
        if self.oldest_unacked_seq is not None and self.oldest_unacked_seq > self.seq:
            raise ValueError("oldest_unacked_seq must be <= seq")
        return self


class LineCount(Payload):
    """Retained on edge/<device>/cameras/<camera>/lines/<line>/<label>."""

    in_: int = Field(alias="in", ge=0)
    """Crossings in the `in` direction."""
    out: int = Field(ge=0)
    """Crossings in the `out` direction."""
    since: str
    """Start of the count: this daemon's start (counts are per boot, not kept across restarts), UTC
    RFC 3339 ms."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def event_id(boot_id: str, camera: str, track_id: int) -> str:
    """The id of the event of `track_id` on `camera` in boot `boot_id`."""
    return f"{boot_id}-{camera}-{track_id}"
