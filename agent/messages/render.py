"""One-line, human-readable renderings of payloads for terminals (`edge-agent demo`,
`edge-gateway watch`): one renderer, so both show a frame the same way."""

from __future__ import annotations

from collections import Counter

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
