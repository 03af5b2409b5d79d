"""Pydantic models of every MQTT payload the device publishes.

These are the contract operators build on; `docs/mqtt.md` is generated from them
(`python -m agent.messages.docs`) and a test fails when the two drift apart.
Models here never touch disk or network.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.contracts.ids import SafeId
from agent.contracts.streams import BootId, Stream

DETECTIONS_SCHEMA = "edge.detections/1"
OLDEST_UNACKED_FIELD = "oldest_unacked_seq"
"""The last field of a detection message: filled in by the publisher at (re)publish time."""
STATUS_SCHEMA = "edge.status/1"
HEALTH_SCHEMA = "edge.health/1"

# counters of the outbox that both status and health report
OutboxDropped = Annotated[
    int, Field(ge=0, description="Messages dropped by the outbox cap since this boot.")
]
OutboxQuarantined = Annotated[
    int,
    Field(
        ge=0,
        description="Outbox files found corrupt at this start and moved aside "
        "(`<outbox>.corrupt-<ts>`); the messages in them are lost.",
    ),
]


class Payload(BaseModel):
    """Base of every payload: unknown fields are errors, so a typo cannot ship; a field's
    description is the docstring under it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def rfc3339_ms(ts: float) -> str:
    """Format epoch seconds as UTC RFC 3339 with milliseconds, e.g. 2026-11-27T10:52:40.123Z."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class FrameSize(Payload):
    width: int = Field(gt=0)
    """Width of the original frame in pixels."""
    height: int = Field(gt=0)
    """Height of the original frame in pixels."""


class ModelRef(Payload):
    name: str
    """Model name from its manifest."""
    version: int = Field(ge=0)
    """Model version, monotonic per name."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the model artifact that ran."""


class Latency(Payload):
    pre: float = Field(ge=0)
    """Preprocessing (letterbox, normalise) in ms."""
    infer: float = Field(ge=0)
    """Inference in ms."""
    post: float = Field(ge=0)
    """Decoding, NMS and scaling in ms."""
    total: float = Field(ge=0)
    """pre + infer + post in ms."""


class Detection(Payload):
    label: str
    """Class name."""
    class_id: int = Field(ge=-1)
    """Index into the model's class names; -1 for a label outside them."""
    confidence: float | None = Field(ge=0, le=1)
    """Score in [0, 1]; null where the model gives none (Florence-2)."""
    box: tuple[float, float, float, float]
    """[x1, y1, x2, y2] in pixels of the original frame."""
    track_id: int | None = Field(None, ge=0)
    """Tracker id, stable while the object is tracked (per camera and boot); null when tracking is
    off or the track is not confirmed yet. Florence-2 messages carry the ids of the YOLO message
    they refine (matched by box)."""


class DetectionMessage(Payload):
    """One message per processed frame, on edge/<device>/cameras/<camera>/detections."""

    schema_: Literal["edge.detections/1"] = Field(DETECTIONS_SCHEMA, alias="schema")
    """Payload schema id and version."""
    device: SafeId
    """Device id."""
    camera: SafeId
    """Camera id."""
    boot_id: BootId
    """Random id of this daemon start (8-64 hex digits); with stream and seq, identifies the message
    for dedup."""
    stream: Literal[Stream.DETECTIONS, Stream.FLORENCE2] = Stream.DETECTIONS
    """The stream this message belongs to: `detections` for source yolo, `florence2` for source
    florence2 (derived from source when absent)."""
    seq: int = Field(ge=0)
    """Per stream (boot, camera, stream): starts at 0 and grows by exactly 1 for each message; a gap
    means a lost message. A florence2 message has its own seq (its `refines` names the YOLO seq)."""
    ts: str
    """Capture time, UTC, RFC 3339 with milliseconds."""
    frame: FrameSize
    """Size of the original frame."""
    model: ModelRef
    """The model that produced this message."""
    source: Literal["yolo", "florence2"]
    """Which model produced this message."""
    latency_ms: Latency
    """Stage latencies of this frame in milliseconds."""
    detections: list[Detection]
    """What was found; may be empty."""
    hard: bool = False
    """YOLO found this frame hard; a florence2 message may follow."""
    refines: int | None = None
    """On florence2 messages: the seq of the YOLO message this refines."""
    task: str | None = None
    """On florence2 messages: the Florence-2 task that ran, e.g. '<OD>'."""
    text: str | None = None
    """On florence2 messages: text output of caption/OCR tasks."""
    oldest_unacked_seq: int | None = Field(None, ge=0)
    """Low-water mark: the lowest seq of this stream the device still held in its outbox when it
    (re)published this message (<= seq; a replay carries a fresh value). Anything of the stream
    below it that a consumer lacks is gone for good. Null where the device has no outbox entry for
    it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _stream_from_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stream" not in data and data.get("source") == "florence2":
            return {**data, "stream": Stream.FLORENCE2}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DetectionMessage:
        want = Stream.FLORENCE2 if self.source == "florence2" else Stream.DETECTIONS
        if self.stream != want:
            got = Stream(self.stream).value
            raise ValueError(f"source {self.source} belongs to stream {want.value}, not {got}")
        if self.oldest_unacked_seq is not None and self.oldest_unacked_seq > self.seq:
            raise ValueError("oldest_unacked_seq must be <= seq")
        return self


class CameraStatus(Payload):
    id: str
    """Camera id."""
    state: Literal["connecting", "streaming", "stalled", "backoff", "stopped"]
    """Reader state machine position."""
    fps: float = Field(ge=0)
    """Frames per second reaching inference, recent average."""
    last_error: str | None = None
    """Last error of the source, if any."""


class StatusMessage(Payload):
    """Retained on edge/<device>/status; 'offline' is also the last will."""

    schema_: Literal["edge.status/1"] = Field(STATUS_SCHEMA, alias="schema")
    """Payload schema id and version."""
    device: str
    """Device id."""
    state: Literal["online", "offline"]
    """Whether the daemon is running."""
    ts: str
    """Time of this status, UTC, RFC 3339 with milliseconds."""
    boot_id: str | None = None
    """Id of the daemon start that wrote this status."""
    agent_version: str | None = None
    """edge-agent package version."""
    model: ModelRef | None = None
    """Active model."""
    cameras: list[CameraStatus] = Field(default_factory=list)
    """Each camera's state."""
    outbox_dropped: OutboxDropped = 0
    outbox_quarantined: OutboxQuarantined = 0
    config_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the canonical JSON of the running config (pushed cameras included, defaults filled
    in): which config this device runs."""
    restart_required: list[str] = Field(default_factory=list)
    """Config paths changed by a reload that only a restart applies (e.g. `device.id`,
    `model.path`); their running values stay in force until then."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class HealthMessage(Payload):
    """Periodic metrics on edge/<device>/health (QoS 0, not retained)."""

    schema_: Literal["edge.health/1"] = Field(HEALTH_SCHEMA, alias="schema")
    """Payload schema id and version."""
    device: str
    """Device id."""
    boot_id: str
    """Id of this daemon start."""
    ts: str
    """Time of this report, UTC, RFC 3339 with milliseconds."""
    uptime_s: float = Field(ge=0)
    """Seconds since the daemon started."""
    fps: float = Field(ge=0)
    """Frames inferred per second over the last interval, all cameras."""
    latency_ms_p50: float | None = None
    """Median frame latency (pre+infer+post)."""
    latency_ms_p99: float | None = None
    """99th percentile frame latency."""
    frames_processed: int = Field(ge=0)
    """Frames inferred since start."""
    frames_dropped: int = Field(ge=0)
    """Frames a reader replaced before inference took them (newest-frame policy)."""
    publish_queue_depth: int = Field(ge=0)
    """Messages waiting in the hand-off queue."""
    publish_queue_dropped: int = Field(ge=0)
    """Messages the hand-off queue refused because it was full."""
    publish_rejected: int = Field(0, ge=0)
    """Messages the broker refused (e.g. by ACL): deleted and counted."""
    outbox_depth: int = Field(ge=0)
    """Messages in the outbox awaiting delivery."""
    outbox_bytes: int = Field(0, ge=0)
    """Payload bytes stored in the outbox."""
    outbox_dropped: OutboxDropped
    outbox_quarantined: OutboxQuarantined = 0
    acks_refused: int = Field(0, ge=0)
    """Acks on edge/<device>/ack refused since start (malformed, unsigned, badly signed, unknown key
    or for another device); they deleted nothing."""
    fallback_rate_per_min: float = Field(0.0, ge=0)
    """Florence-2 escalations per minute over the last interval."""
    fallback_state: Literal["disabled", "idle", "busy", "down"] = "disabled"
    """Florence-2 worker state."""
    rss_mb: float = Field(ge=0)
    """Resident memory of the daemon in MiB."""
    cpu_ms_per_frame: float | None = Field(None, ge=0)
    """The daemon's CPU time (all threads, user + system) over the last interval divided by the
    frames inferred in it, in ms; null when none was inferred."""
    cameras: list[CameraStatus] = Field(default_factory=list)
    """Each camera's state."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def dump_payload(msg: BaseModel) -> bytes:
    """Serialise a payload to compact JSON bytes, with field aliases (`schema`)."""
    return msg.model_dump_json(by_alias=True, exclude_none=False).encode()
