"""After the engine: decode a batch, then each frame's hooks, message, seq and hand-off.

Runs on one thread, batch after batch, frame after frame, so that per camera the tracking
hook sees frames in order and `seq` grows by one per published message.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from agent.contracts.payloads import (
    Detection,
    DetectionMessage,
    FrameSize,
    Latency,
    ModelRef,
    dump_payload,
    rfc3339_ms,
)
from agent.fallback.policy import HardFrame
from agent.health.metrics import FrameRecord, FrameWindow
from agent.live import LiveConfig, apply_thresholds
from agent.stages.prepare import Batch
from agent.types import Detections, Frame, ModelInfo, Timings

log = structlog.get_logger(__name__)


class ResultHook(Protocol):
    """Per-camera, in-frame-order post-processing of a result (`agent.tracking.stage`)."""

    def on_result(
        self, frame: Frame, detections: Detections, info: ModelInfo
    ) -> list[int | None]: ...


class HardFrameHook(Protocol):
    """The Florence-2 fallback as the loop sees it (see `agent.fallback.worker.Fallback`)."""

    def is_hard(self, camera: str, detections: Detections, now_mono: float) -> bool: ...

    def submit(self, hard: HardFrame) -> None: ...


SubmitFn = Callable[[str, int, bytes], bool]
"""submit(camera, seq, payload) -> accepted; must never block."""


@dataclass(frozen=True)
class PipelineSettings:
    device: str
    boot_id: str
    publish_empty: bool = True
    recent_frames: int = 8


def model_ref(info: ModelInfo) -> ModelRef:
    """The payload's model identity for a loaded model."""
    return ModelRef(name=info.name, version=info.version, sha256=info.sha256)


def build_message(
    settings: PipelineSettings,
    frame: Frame,
    seq: int,
    detections: Detections,
    timings: Timings,
    info: ModelInfo,
    hard: bool,
    track_ids: list[int | None] | None = None,
) -> DetectionMessage:
    """Build the YOLO detection message of one frame (pure)."""
    names = info.class_names
    tids = track_ids if track_ids is not None else [None] * len(detections)
    dets = [
        Detection(
            label=names[c] if 0 <= c < len(names) else str(c),
            class_id=int(c),
            confidence=round(float(s), 4),
            box=(
                round(float(b[0]), 1),
                round(float(b[1]), 1),
                round(float(b[2]), 1),
                round(float(b[3]), 1),
            ),
            track_id=t,
        )
        for b, s, c, t in zip(
            detections.xyxy.tolist(),
            detections.confidence.tolist(),
            detections.class_id.tolist(),
            tids,
            strict=True,
        )
    ]
    return DetectionMessage(
        device=settings.device,
        camera=frame.camera,
        boot_id=settings.boot_id,
        seq=seq,
        ts=rfc3339_ms(frame.captured_at),
        frame=FrameSize(width=frame.width, height=frame.height),
        model=model_ref(info),
        source="yolo",
        latency_ms=Latency(
            pre=round(timings.pre, 3),
            infer=round(timings.infer, 3),
            post=round(timings.post, 3),
            total=round(timings.total, 3),
        ),
        detections=dets,
        hard=hard,
    )


@dataclass(frozen=True)
class PostHooks:
    """What the post stage calls besides `submit`, each optional: tracking, the fallback and
    the live thresholds."""

    tracking: ResultHook | None = None
    fallback: HardFrameHook | None = None
    live: Callable[[], LiveConfig] | None = None


class PostProcessor:
    """Turns a batch the engine ran into messages, one frame at a time (one thread).

    In a batch, each frame's `latency_ms` stages are the batch's: the letterbox of the
    batch, its engine call and its decode.
    """

    def __init__(
        self,
        settings: PipelineSettings,
        submit: SubmitFn,
        hooks: PostHooks,
        window: FrameWindow | None = None,
    ) -> None:
        self._settings = settings
        self._submit = submit
        self._hooks = hooks
        self.window = window or FrameWindow()  # what this stage records, read by health
        self._seq: dict[str, int] = {}
        self.recent: deque[Frame] = deque(maxlen=settings.recent_frames)
        self.recent_lock = threading.Lock()
        self.last_frame_mono = time.monotonic()
        self.submit_refused = 0
        self.batches = 0  # engine calls whose results came here, and their frames
        self.frames = 0

    def finish(self, batch: Batch) -> None:
        """Decode `batch` and hand each frame's message off; failures are counted per frame."""
        detector = batch.detector
        self.batches += 1
        self.frames += len(batch.frames)
        if self._hooks.live is not None:
            apply_thresholds(detector, self._hooks.live())  # a reload applies between batches
        start = time.perf_counter()
        try:
            if batch.outputs is None:
                raise RuntimeError(batch.error or "the engine gave no outputs")
            hws = [(int(f.image.shape[0]), int(f.image.shape[1])) for f in batch.frames]
            results = detector.decode_batch(batch.outputs, batch.infos, hws)
        except Exception as err:  # an engine failure must not kill the loop; it is counted
            for frame in batch.frames:
                age_ms = (batch.started_mono - frame.captured_mono) * 1000.0
                self.window.add(FrameRecord(batch.started_mono, 0.0, 0, age_ms, error=True))
                log.error("inference failed", camera=frame.camera, error=repr(err)[:300])
            return
        timings = Timings(
            pre=batch.pre_ms, infer=batch.infer_ms, post=(time.perf_counter() - start) * 1e3
        )
        with self.recent_lock:
            self.recent.extend(batch.frames)
        self.last_frame_mono = time.monotonic()
        for frame, detections in zip(batch.frames, results, strict=True):
            self._frame(batch, frame, detections, timings)

    def _frame(self, batch: Batch, frame: Frame, detections: Detections, timings: Timings) -> None:
        """Record, track, classify, build, number and submit one frame's result."""
        info, start = batch.detector.info, batch.started_mono
        age_ms = (start - frame.captured_mono) * 1000.0
        self.window.add(FrameRecord(start, timings.total, len(detections), age_ms))
        hooks = self._hooks
        track_ids = None
        if hooks.tracking is not None:  # every frame, empty ones too: tracks age in them
            track_ids = hooks.tracking.on_result(frame, detections, info)
        if len(detections) == 0 and not self._settings.publish_empty:
            return
        hard = hooks.fallback is not None and hooks.fallback.is_hard(
            frame.camera, detections, start
        )
        seq = self._seq.get(frame.camera, 0)
        try:
            msg = build_message(
                self._settings, frame, seq, detections, timings, info, hard, track_ids
            )
        except ValueError as err:  # e.g. a model scoring outside [0, 1]: counted, loop goes on
            self.window.add(FrameRecord(start, timings.total, 0, age_ms, error=True))
            log.error(
                "model output does not fit the payload", camera=frame.camera, error=str(err)[:300]
            )
            return
        if not self._submit(frame.camera, seq, dump_payload(msg)):
            self.submit_refused += 1  # not published: the seq gap shows consumers the counted loss
        self._seq[frame.camera] = seq + 1
        if hard and hooks.fallback is not None:
            hooks.fallback.submit(HardFrame(frame, detections, msg, info.class_names))
