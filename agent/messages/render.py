"""One-line, human-readable renderings of payloads for terminals (`edge-agent demo`,
`edge-gateway watch`): one renderer, so both show a frame the same way."""

from __future__ import annotations

from collections import Counter

from agent.contracts.events import EventMessage
from agent.contracts.payloads import DetectionMessage


def detection_line(msg: DetectionMessage) -> str:
    """Render a detection message as one compact line, e.g.

    `11:17:50.512 jet-0/cam-a #12 demo-yolov8n@2 41.3ms personx2 carx1`; a Florence-2
    refinement adds ` florence2(refines #N)`, a hard frame ` HARD`.
    """
    counts = Counter(d.label for d in msg.detections)
    objs = " ".join(f"{label}x{n}" for label, n in counts.most_common()) or "-"
    tag = "" if msg.source == "yolo" else f" florence2(refines #{msg.refines})"
    hard = " HARD" if msg.hard else ""
    return (
        f"{msg.ts[11:23]} {msg.device}/{msg.camera} #{msg.seq} "
        f"{msg.model.name}@{msg.model.version} {msg.latency_ms.total:.1f}ms{tag}{hard} {objs}"
    )


def event_line(msg: EventMessage) -> str:
    """Render an event as one line, e.g.

    `11:17:50.512 jet-0/cam-a event #3 new person track 7 0.81 zones=driveway`; an `end`
    adds its reason, line crossings show as `gate:in`, a stationary object ` stationary`.
    """
    kind = msg.type.value if msg.end_reason is None else f"end({msg.end_reason.value})"
    parts = [
        f"{msg.ts[11:23]} {msg.device}/{msg.camera} event #{msg.seq} {kind} {msg.label} "
        f"track {msg.track_id} {msg.score:.2f}"
    ]
    if msg.zones_current:
        parts.append("zones=" + ",".join(msg.zones_current))
    if msg.lines_crossed:
        parts.append("lines=" + ",".join(f"{c.line}:{c.direction}" for c in msg.lines_crossed))
    if msg.stationary:
        parts.append("stationary")
    return " ".join(parts)
