"""The inference loop: newest frame per camera -> detector -> detection message -> hand-off.

One thread runs the loop. It never waits on the network: messages go to a non-blocking
`submit` callable (the publisher's hand-off). Model swaps happen between two frames: a
swap request is applied at the top of the next iteration, so no frame is dropped and no
frame ever runs on a half-swapped model. The class implements `agent.ota.host.ModelHost`.

The pipeline owns every detector it is given: the one it starts with, each one handed to
`swap`, and each candidate it loads for the OTA manager. It alone closes them - the old one
after a swap, a candidate the manager `discard`s, the active one on `unload` (pause mode) and
at `stop`. Nobody else calls `Detector.close()`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from agent.contracts.manifest import Manifest
from agent.contracts.payloads import (
    Detection,
    DetectionMessage,
    FrameSize,
    Latency,
    ModelRef,
    dump_payload,
    rfc3339_ms,
)
from agent.health.metrics import FrameRecord, FrameWindow, WindowSummary
from agent.live import LiveConfig, apply_thresholds
from agent.types import Detections, Frame, ModelInfo, Timings

if TYPE_CHECKING:
    from agent.engines.detector import Detector

log = structlog.get_logger(__name__)


class FrameFeed(Protocol):
    """Where the loop gets frames: the newest unseen frame of some camera, fairly."""

    def next_frame(self, timeout: float) -> Frame | None:
        """Return a frame not returned before, or None after `timeout` seconds."""
        ...


class ResultHook(Protocol):
    """Per-camera, in-frame-order post-processing of a result (`agent.tracking.stage`)."""

    def on_result(
        self, frame: Frame, detections: Detections, info: ModelInfo
    ) -> list[int | None]: ...


class HardFrameHook(Protocol):
    """The Florence-2 fallback as the loop sees it (see `agent.fallback.worker.Fallback`)."""

    def is_hard(self, camera: str, detections: Detections, now_mono: float) -> bool: ...

    def submit(
        self,
        frame: Frame,
        detections: Detections,
        yolo: DetectionMessage,
        class_names: tuple[str, ...],
    ) -> None: ...


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


class Pipeline:
    """Runs the inference loop in its own thread; implements the OTA `ModelHost`."""

    def __init__(
        self,
        settings: PipelineSettings,
        feed: FrameFeed,
        detector: Detector,
        submit: SubmitFn,
        load_detector: Callable[..., Detector],
        fallback: HardFrameHook | None = None,
        window: FrameWindow | None = None,
        tracking: ResultHook | None = None,
        live: Callable[[], LiveConfig] | None = None,
    ) -> None:
        self._settings = settings
        self._tracking = tracking
        self._live = live  # read before every frame: thresholds (and camera settings) of reloads
        self._feed = feed
        self._detector = detector
        self._submit = submit
        self._load = load_detector
        self._fallback = fallback
        self.window = window or FrameWindow()
        self._seq: dict[str, int] = {}
        self._recent: deque[Frame] = deque(maxlen=settings.recent_frames)
        self._lock = threading.Lock()
        self._pending: Detector | None = None
        self._closed = False
        self._swapped = threading.Condition(self._lock)
        self._paused = threading.Event()
        self._resumed = threading.Event()  # a paused loop sleeps on it (no polling)
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_loop_mono = time.monotonic()
        self.last_frame_mono = time.monotonic()
        self.submit_refused = 0
        self.swap_count = 0
        self.on_model_change: Callable[[ModelInfo], None] | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop after the current frame and close the active detector; True if the thread
        ended within `timeout` (otherwise the detector may still be in use and stays open)."""
        self._stop.set()
        self._paused.clear()
        self._resumed.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("inference thread still running; its detector is left open")
                return False
        with self._lock:
            self._closed = True
            detector, pending = self._detector, self._pending
            self._pending = None
        for d in (detector, pending):
            if d is not None:
                d.close()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- ModelHost ---------------------------------------------------------------------
    def active_detector(self) -> Detector:
        with self._lock:
            return self._detector

    def recent_frames(self, n: int) -> list[Frame]:
        with self._lock:
            frames = list(self._recent)
        return frames[-n:]

    def load_detector(self, model_path: Path, manifest: Manifest | None) -> Detector:
        """Load a candidate with the daemon's engine config and thresholds.

        The pipeline owns it from here: `swap` installs it, `discard` closes it.
        """
        return self._load(model_path, manifest)

    def discard(self, candidate: Detector) -> None:
        """Close a candidate that will not be installed (failed validation, aborted swap)."""
        with self._lock:
            if candidate is self._detector or candidate is self._pending:
                raise ValueError("cannot discard the installed detector")
        candidate.close()

    def unload(self) -> None:
        """Pause mode: close the active detector to free its memory (the loop must be paused;
        `swap` installs the next one before `resume`)."""
        if self.running and not self._paused.is_set():
            raise RuntimeError("unload needs a paused inference loop")
        self.active_detector().close()

    def swap(self, new: Detector, timeout: float) -> ModelInfo:
        """Install `new` between two frames and close the one it replaces; return the old
        model's info. On TimeoutError (no frame boundary in `timeout` s) `new` is closed and
        the old detector stays installed."""
        with self._lock:
            if self._closed:
                new.close()
                raise TimeoutError("the pipeline is stopped")
            direct = not self.running or self._paused.is_set()
            old = self._detector
            if direct:
                self._detector = new
            else:
                self._pending = new
                if not self._swapped.wait_for(lambda: self._pending is None, timeout):
                    self._pending = None
                    new.close()
                    raise TimeoutError(
                        f"the inference loop did not reach a frame boundary in {timeout}s"
                    )
        if direct:
            self._after_swap(new)  # outside the lock: listeners may call active_detector()
        old.close()  # the loop has moved on to `new`: nobody runs `old` any more
        return old.info

    def pause(self) -> None:
        """Stop taking frames after the current one (readers keep their newest frame)."""
        self._idle.clear()
        self._resumed.clear()
        self._paused.set()
        if self.running:
            self._idle.wait(timeout=30.0)

    def resume(self) -> None:
        self._paused.clear()
        self._resumed.set()

    def window_stats(self, since_mono: float) -> WindowSummary:
        return self.window.summary(since_mono, time.monotonic())

    # -- the loop ------------------------------------------------------------------------
    def _after_swap(self, new: Detector) -> None:
        self.swap_count += 1
        log.info("model swapped", model=new.info.name, version=new.info.version)
        if self.on_model_change is not None:
            self.on_model_change(new.info)

    def _apply_pending(self) -> Detector:
        with self._lock:
            swapped = self._pending is not None
            if swapped:
                self._detector = self._pending
                self._pending = None
                self._swapped.notify_all()
            detector = self._detector
        if swapped:
            self._after_swap(detector)  # outside the lock: listeners may call active_detector()
        return detector

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last_loop_mono = time.monotonic()
            if self._paused.is_set():
                self._idle.set()
                self._resumed.wait(0.2)  # resume() or stop() wakes it at once
                continue
            detector = self._apply_pending()
            frame = self._feed.next_frame(timeout=0.2)
            if frame is None:
                continue
            detector = self._apply_pending()
            self._process(detector, frame)

    def _process(self, detector: Detector, frame: Frame) -> None:
        start = time.monotonic()
        if self._live is not None:
            apply_thresholds(detector, self._live())  # a reload applies between two frames
        age_ms = (start - frame.captured_mono) * 1000.0
        try:
            detections, timings = detector.detect(frame.image)
        except Exception as err:  # an engine failure must not kill the loop; it is counted
            self.window.add(FrameRecord(start, 0.0, 0, age_ms, error=True))
            log.error("inference failed", camera=frame.camera, error=repr(err))
            return
        with self._lock:
            self._recent.append(frame)
        self.last_frame_mono = time.monotonic()
        self.window.add(FrameRecord(start, timings.total, len(detections), age_ms))
        track_ids = None
        if self._tracking is not None:  # every frame, empty ones too: tracks age in them
            track_ids = self._tracking.on_result(frame, detections, detector.info)
        if len(detections) == 0 and not self._settings.publish_empty:
            return
        hard = False
        if self._fallback is not None:
            hard = self._fallback.is_hard(frame.camera, detections, start)
        seq = self._seq.get(frame.camera, 0)
        try:
            msg = build_message(
                self._settings, frame, seq, detections, timings, detector.info, hard, track_ids
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
        if hard and self._fallback is not None:
            self._fallback.submit(frame, detections, msg, detector.info.class_names)
