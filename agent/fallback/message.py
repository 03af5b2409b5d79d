"""Build the Florence-2 refinement message from the YOLO message it refines (pure)."""

from __future__ import annotations

import math

from agent.contracts.payloads import Detection, DetectionMessage, Latency, ModelRef
from agent.contracts.streams import Stream
from agent.fallback.parse import FlorenceResult
from agent.fallback.runtime import FlorenceInfo, Generation


def florence_detections(result: FlorenceResult, class_names: tuple[str, ...]) -> list[Detection]:
    """Payload detections: YOLO class name and id where the label matches, else Florence-2's
    label and class_id -1; confidence null (Florence-2 gives no score)."""
    out = []
    d = result.detections
    for i in range(len(d)):
        cid = int(d.class_id[i])
        conf = float(d.confidence[i])
        out.append(
            Detection(
                label=class_names[cid] if cid >= 0 else result.labels[i],
                class_id=cid,
                confidence=None if math.isnan(conf) else conf,
                box=tuple(round(float(v), 2) for v in d.xyxy[i]),  # type: ignore[arg-type]
            )
        )
    return out


def build_refinement(
    yolo: DetectionMessage,
    result: FlorenceResult,
    info: FlorenceInfo,
    model_version: int,
    gen: Generation,
    post_ms: float,
    class_names: tuple[str, ...],
    *,
    seq: int,
) -> DetectionMessage:
    """The `source: florence2` message: same device/camera/boot_id/ts/frame as the YOLO
    message, its own `seq` in the camera's `florence2` stream, `refines` = the YOLO seq,
    `hard` true, Florence-2's model and latency."""
    return DetectionMessage(
        device=yolo.device,
        camera=yolo.camera,
        boot_id=yolo.boot_id,
        stream=Stream.FLORENCE2,
        seq=seq,
        ts=yolo.ts,
        frame=yolo.frame,
        model=ModelRef(name=info.name, version=model_version, sha256=info.sha256),
        source="florence2",
        latency_ms=Latency(
            pre=round(gen.pre_ms, 3),
            infer=round(gen.infer_ms, 3),
            post=round(post_ms, 3),
            total=round(gen.pre_ms + gen.infer_ms + post_ms, 3),
        ),
        detections=florence_detections(result, class_names),
        hard=True,
        refines=yolo.seq,
        task=result.task,
        text=result.text,
    )
