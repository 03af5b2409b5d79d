"""One-line, human-readable renderings of payloads for terminals (demo, `edge-gateway watch`)."""

from __future__ import annotations

from collections import Counter

from agent.messages.payloads import DetectionMessage


def detection_line(msg: DetectionMessage) -> str:
    """Render a detection message as one line, e.g.

    `demo-device/demo #12 10:52:40.123 yolo v1  3 person, 1 car  (38.2 ms)`
    """
    counts = Counter(d.label for d in msg.detections)
    what = ", ".join(f"{n} {label}" for label, n in counts.most_common()) or "nothing"
    clock = msg.ts[11:23] if len(msg.ts) >= 23 else msg.ts
    extra = ""
    if msg.source == "florence2":
        extra = f"  refines #{msg.refines} {msg.task or ''}".rstrip()
        if msg.text:
            extra += f' "{msg.text[:60]}"'
    elif msg.hard:
        extra = "  [hard]"
    return (
        f"{msg.device}/{msg.camera} #{msg.seq} {clock} {msg.source} {msg.model.name} "
        f"v{msg.model.version}  {what}  ({msg.latency_ms.total:.1f} ms){extra}"
    )
