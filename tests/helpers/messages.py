"""Detection payloads for tests and benchmarks that need realistic messages without a daemon."""

from __future__ import annotations

from typing import Literal

from agent.contracts.payloads import (
    Detection,
    DetectionMessage,
    FrameSize,
    Latency,
    ModelRef,
    dump_payload,
)

THREE = [
    Detection(label="person", class_id=0, confidence=0.9, box=(10, 20, 60, 200)),
    Detection(label="person", class_id=0, confidence=0.8, box=(300, 40, 350, 220)),
    Detection(label="car", class_id=1, confidence=0.7, box=(400, 300, 700, 500)),
]
"""Two people and a car, as the demo model sees vtest."""


def detection_payload(
    seq: int,
    device: str = "jet-0",
    camera: str = "cam-a",
    *,
    boot_id: str = "00000000000000b1",
    source: Literal["yolo", "florence2"] = "yolo",
    detections: list[Detection] | None = None,
    oldest_unacked_seq: int | None = None,
) -> bytes:
    """One edge.detections/1 payload (demo-yolov8n v2, 768x576, 41.3 ms) as published."""
    return dump_payload(
        DetectionMessage(
            device=device,
            camera=camera,
            boot_id=boot_id,
            stream="florence2" if source == "florence2" else "detections",
            seq=seq,
            oldest_unacked_seq=oldest_unacked_seq,
            ts="2026-11-27T11:17:50.512Z",
            frame=FrameSize(width=768, height=576),
            model=ModelRef(name="demo-yolov8n", version=2, sha256="a" * 64),
            source=source,
            latency_ms=Latency(pre=1, infer=38, post=2.3, total=41.3),
            detections=THREE if detections is None else detections,
            refines=0 if source == "florence2" else None,
        )
    )
