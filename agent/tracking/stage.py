"""The tracking stage: the one call the pipeline makes per result, per camera, in frame order.

`TrackingStage.on_result(frame, detections, info)` returns one `track_id` (or None) per
detection for the detection message and feeds the events emitter (when events are on). A
result produced by a different model than the camera's previous one (a model swap) first ends
that camera's events (`end_reason: model_swap`) and starts its tracker afresh.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from agent.contracts.events import EndReason
from agent.events.machine import Observation
from agent.tracking.tracker import Tracker
from agent.types import Detections, Frame, ModelInfo

if TYPE_CHECKING:
    from agent.events.emitter import EventEmitter

log = structlog.get_logger(__name__)


def label_of(names: tuple[str, ...], class_id: int) -> str:
    """The class name of `class_id` (its number as text outside the model's names)."""
    return names[class_id] if 0 <= class_id < len(names) else str(class_id)


def observations(
    detections: Detections, ids: list[int | None], names: tuple[str, ...]
) -> list[Observation]:
    """The tracked detections of a frame as event-machine input (untracked boxes left out)."""
    out = []
    boxes, scores, classes = (
        detections.xyxy.tolist(),
        detections.confidence.tolist(),
        detections.class_id.tolist(),
    )
    for i, tid in enumerate(ids):
        if tid is None:
            continue
        s = scores[i]
        b = boxes[i]
        out.append(
            Observation(
                track_id=tid,
                label=label_of(names, classes[i]),
                score=1.0 if math.isnan(s) else min(max(s, 0.0), 1.0),
                box=(round(b[0], 1), round(b[1], 1), round(b[2], 1), round(b[3], 1)),
            )
        )
    return out


class TrackingStage:
    """Tracker + (optional) events emitter, per camera."""

    def __init__(self, tracker: Tracker, emitter: EventEmitter | None = None) -> None:
        self._tracker = tracker
        self.emitter = emitter
        self.frame_listeners: list[Callable[[Frame, list[Observation]], None]] = []
        """Called with each frame and its tracked detections after the events of that frame
        (e.g. the snapshot store picking best frames); run on the inference path: keep cheap."""
        self._model: dict[str, tuple[str, int, str]] = {}
        self._lock = threading.Lock()  # the inference thread's results vs the supervisor's tick
        self.cost_s = 0.0
        """Seconds spent in `on_result` since start (for the overhead figure)."""
        self.failures = 0

    def on_result(self, frame: Frame, detections: Detections, info: ModelInfo) -> list[int | None]:
        """Track ids for `detections` of `frame` (same order); events and counts as a side
        effect. Never raises: a failure is logged and the frame's boxes stay untracked."""
        start = time.perf_counter()
        try:
            with self._lock:
                return self._on_result(frame, detections, info)
        except Exception as err:  # the inference loop must go on; counted and logged
            self.failures += 1
            log.error("tracking failed", camera=frame.camera, error=repr(err)[:300])
            return [None] * len(detections)
        finally:
            self.cost_s += time.perf_counter() - start

    def _on_result(self, frame: Frame, detections: Detections, info: ModelInfo) -> list[int | None]:
        cam = frame.camera
        model = (info.name, info.version, info.sha256)
        previous = self._model.get(cam)
        if previous is not None and previous != model:
            self._tracker.reset(cam)
            if self.emitter is not None:
                self.emitter.end_camera(cam, frame.captured_at, EndReason.MODEL_SWAP)
        self._model[cam] = model
        ids = self._tracker.update(cam, detections)
        if self.emitter is not None or self.frame_listeners:
            obs = observations(detections, ids, info.class_names)
            if self.emitter is not None:
                self.emitter.on_frame(cam, frame.captured_at, obs, frame.image)
            for listener in self.frame_listeners:
                listener(frame, obs)
        return ids

    def tick(self, now: float) -> None:
        """From the supervising thread, about once a second: end the events of cameras that
        delivered no frame for `events.max_disappeared_s` (stalled, backoff, end of file)."""
        if self.emitter is None:
            return
        try:
            with self._lock:
                self.emitter.expire(now)
        except Exception as err:  # the supervisor must go on; counted and logged
            self.failures += 1
            log.error("event expiry failed", error=repr(err)[:300])

    def close(self) -> None:
        """Clean stop (after the last result): end every open event."""
        if self.emitter is not None:
            with self._lock:
                self.emitter.close(time.time())
