"""Build the Florence-2 refinement message from the YOLO message it refines (pure)."""

from __future__ import annotations

import math

from agent.contracts.payloads import Detection, DetectionMessage, Latency, ModelRef
from agent.contracts.streams import Stream
from agent.fallback.parse import FlorenceResult
from agent.fallback.runtime import FlorenceInfo, Generation

INHERIT_MIN_IOU = 0.3
"""A Florence-2 box takes the track id of the YOLO box it overlaps at least this much."""


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inherit_track_ids(boxes: list[tuple[float, ...]], yolo: list[Detection]) -> list[int | None]:
    """The track id each box keeps from the refined YOLO message (pure): greedy by IoU, best
    pairs first, each YOLO id given at most once, only pairs with IoU >= INHERIT_MIN_IOU."""
    pairs = sorted(
        (
            (_iou(box, y.box), i, j)
            for i, box in enumerate(boxes)
            for j, y in enumerate(yolo)
            if y.track_id is not None
        ),
        reverse=True,
    )
    out: list[int | None] = [None] * len(boxes)
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < INHERIT_MIN_IOU:
            break
        if out[i] is None and j not in used:
            out[i] = yolo[j].track_id
            used.add(j)
    return out


def florence_detections(
    result: FlorenceResult, class_names: tuple[str, ...], yolo: list[Detection] | None = None
) -> list[Detection]:
    """Payload detections: YOLO class name and id where the label matches, else Florence-2's
    label and class_id -1; confidence null (Florence-2 gives no score); the track ids of the
    `yolo` detections they overlap (`inherit_track_ids`)."""
    d = result.detections
    boxes = [tuple(round(float(v), 2) for v in d.xyxy[i]) for i in range(len(d))]
    tids = inherit_track_ids(boxes, yolo or [])
    out = []
    for i in range(len(d)):
        cid = int(d.class_id[i])
        conf = float(d.confidence[i])
        out.append(
            Detection(
                label=class_names[cid] if cid >= 0 else result.labels[i],
                class_id=cid,
                confidence=None if math.isnan(conf) else conf,
                box=boxes[i],  # type: ignore[arg-type]
                track_id=tids[i],
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
    `hard` true, Florence-2's model and latency; boxes keep the YOLO message's track ids."""
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
        detections=florence_detections(result, class_names, yolo.detections),
        hard=True,
        refines=yolo.seq,
        task=result.task,
        text=result.text,
    )
