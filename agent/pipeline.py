"""The inference loop: newest frames -> letterbox -> engine -> decode -> message -> hand-off.

Three threads, one per stage, joined by one-slot hand-offs (`agent.stages`):

    prepare:   take the newest frame of up to `batch.max` cameras, letterbox them
    inference: one engine call per batch
    post:      decode, tracking hook, Florence-2 hook, payload, seq, `submit`

The prepare thread letterboxes the next batch while the engine runs the current one, and
the post thread handles the previous one meanwhile. Each stage has one thread and the
slots are first in, first out, so per camera frames stay in order and `seq` (assigned in
post only) has no gaps. The prepare thread takes frames only once the slot ahead is empty:
a frame waits at most one engine call before it runs (newest-frame semantics).

The loop never waits on the network: messages go to a non-blocking `submit` callable (the
publisher's hand-off). Model swaps happen between two batches: the prepare thread applies
a swap request once no batch is in flight, so no frame is dropped, no frame ever runs on a
half-swapped model, and the old detector is idle when `swap` closes it. The class
implements `agent.ota.host.ModelHost`.

The pipeline owns every detector it is given: the one it starts with, each one handed to
`swap`, and each candidate it loads for the OTA manager. It alone closes them - the old one
after a swap, a candidate the manager `discard`s, the active one on `unload` (pause mode) and
at `stop`. Nobody else calls `Detector.close()`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.contracts.manifest import Manifest
from agent.health.metrics import FrameWindow, WindowSummary
from agent.stages.batching import BatchCollector, FrameFeed
from agent.stages.config import BatchConfig
from agent.stages.post import (
    HardFrameHook,
    PipelineSettings,
    PostHooks,
    PostProcessor,
    ResultHook,
    SubmitFn,
    build_message,
    model_ref,
)
from agent.stages.prepare import Batch, Preparer
from agent.stages.slot import InFlight, Slot
from agent.types import Frame, ModelInfo

if TYPE_CHECKING:
    from agent.engines.detector import Detector

__all__ = [
    "FrameFeed",
    "HardFrameHook",
    "Pipeline",
    "PipelineSettings",
    "PostHooks",
    "ResultHook",
    "SubmitFn",
    "build_message",
    "model_ref",
]

log = structlog.get_logger(__name__)

TICK_S = 0.2
"""Longest sleep of a stage thread between two checks of stop/pause (its heartbeat)."""


class Pipeline:
    """Runs the inference loop on three threads; implements the OTA `ModelHost`."""

    def __init__(
        self,
        settings: PipelineSettings,
        feed: FrameFeed,
        detector: Detector,
        submit: SubmitFn,
        load_detector: Callable[..., Detector],
        hooks: PostHooks | None = None,
        window: FrameWindow | None = None,
        batch: BatchConfig | None = None,
    ) -> None:
        self._batch = batch or BatchConfig()
        self._collector = BatchCollector(feed)
        self._preparer = Preparer()
        self._detector = detector
        self._rows = detector.batch_size(self._batch.max)
        self._load = load_detector
        self._post = PostProcessor(settings, submit, hooks or PostHooks(), window)
        self.window = self._post.window
        self._lock = threading.Lock()
        self._pending: Detector | None = None
        self._closed = False
        self._swapped = threading.Condition(self._lock)
        self._paused = threading.Event()
        self._idle = threading.Event()
        self._wake = threading.Event()  # set by resume and stop: a paused prepare thread goes on
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._to_engine: Slot[Batch] = Slot()
        self._to_post: Slot[Batch] = Slot()
        self._in_flight = InFlight()
        now = time.monotonic()
        self._beats = {"prepare": now, "inference": now, "post": now}
        self.swap_count = 0
        self.on_model_change: Callable[[ModelInfo], None] | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        stages = (("prepare", self._run_prepare), ("inference", self._run_infer))
        stages += (("post", self._run_post),)
        self._threads = [threading.Thread(target=t, name=n, daemon=True) for n, t in stages]
        for thread in self._threads:
            thread.start()
        log.info("inference stages started", batch_max=self._batch.max, rows=self._rows)

    def stop(self, timeout: float) -> bool:
        """Stop taking frames, finish the batches in flight, close the active detector; True
        if the threads ended within `timeout` (otherwise the detector may still be in use
        and stays open)."""
        self._stop.set()
        self._paused.clear()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning(
                    "inference stage still running; its detector is left open", stage=thread.name
                )
                return False
        post = self._post
        log.info("inference stopped", frames=post.frames, batches=post.batches, rows=self._rows)
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
        return any(t.is_alive() for t in self._threads)

    @property
    def last_loop_mono(self) -> float:
        """The oldest heartbeat of the three stages: stale when any one is stuck (e.g. in
        an engine call)."""
        return min(self._beats.values())

    @property
    def last_frame_mono(self) -> float:
        return self._post.last_frame_mono

    @property
    def submit_refused(self) -> int:
        return self._post.submit_refused

    # -- ModelHost ---------------------------------------------------------------------
    def active_detector(self) -> Detector:
        with self._lock:
            return self._detector

    def recent_frames(self, n: int) -> list[Frame]:
        with self._post.recent_lock:
            frames = list(self._post.recent)
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
        """Install `new` between two batches and close the one it replaces; return the old
        model's info. On TimeoutError (no batch boundary in `timeout` s) `new` is closed and
        the old detector stays installed."""
        with self._lock:
            if self._closed:
                new.close()
                raise TimeoutError("the pipeline is stopped")
            direct = not self.running or self._paused.is_set()
            old = self._detector
            if direct:
                self._install(new)
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
        old.close()  # no batch in flight used `old` when it was replaced: nobody runs it now
        return old.info

    def pause(self) -> None:
        """Stop taking frames after the batches in flight (readers keep their newest frame)."""
        self._idle.clear()
        self._paused.set()
        if self.running:
            self._idle.wait(timeout=30.0)

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()

    def window_stats(self, since_mono: float) -> WindowSummary:
        return self.window.summary(since_mono, time.monotonic())

    # -- swaps (prepare thread) ---------------------------------------------------------
    def _install(self, new: Detector) -> None:
        """Make `new` the active detector (lock held)."""
        self._detector = new
        self._rows = new.batch_size(self._batch.max)

    def _after_swap(self, new: Detector) -> None:
        self.swap_count += 1
        log.info("model swapped", model=new.info.name, version=new.info.version)
        if self.on_model_change is not None:
            self.on_model_change(new.info)

    def _apply_pending(self) -> Detector:
        """The detector for the next batch; a requested swap is applied first, once no batch
        is in flight (so the replaced detector is idle when `swap` closes it)."""
        with self._lock:
            if self._pending is None:
                return self._detector
        while not self._in_flight.wait_none(TICK_S):
            self._beats["prepare"] = time.monotonic()
            if self._stop.is_set():
                return self.active_detector()
        with self._lock:
            swapped = self._pending is not None  # the request may have timed out meanwhile
            if swapped:
                self._install(self._pending)
                self._pending = None
                self._swapped.notify_all()
            detector = self._detector
        if swapped:
            self._after_swap(detector)  # outside the lock: listeners may call active_detector()
        return detector

    # -- the stages ------------------------------------------------------------------------
    def _wait_paused(self) -> None:
        """Paused: signal idle once nothing is in flight, then sleep until resume or stop."""
        if self._in_flight.wait_none(TICK_S):
            self._idle.set()
        while self._paused.is_set() and not self._stop.is_set() and self._idle.is_set():
            self._beats["prepare"] = time.monotonic()
            self._wake.wait(TICK_S)
            self._wake.clear()

    def _run_prepare(self) -> None:
        try:
            while not self._stop.is_set():
                self._beats["prepare"] = time.monotonic()
                if self._paused.is_set():
                    self._wait_paused()
                    continue
                if not self._to_engine.wait_empty(TICK_S):
                    continue  # the engine has not taken the last batch yet: fresher frames later
                self._apply_pending()
                frames = self._collector.collect(
                    self._rows, self._batch.max_wait_ms / 1000.0, TICK_S
                )
                if frames:
                    self._prepare(frames)
        finally:
            self._to_engine.close()

    def _prepare(self, frames: list[Frame]) -> None:
        """Letterbox `frames` with the active detector and hand them to the engine."""
        detector = self._apply_pending()  # a swap requested while frames were awaited
        rows = self._rows
        for start in range(0, len(frames), rows):  # a swap to a smaller batch axis: split
            if start and not self._slot_emptied():
                return  # stopping
            part = frames[start : start + rows]
            batch = self._preparer.prepare(detector, part, rows)
            self._in_flight.add()
            if not self._to_engine.put(batch):
                self._in_flight.done()

    def _slot_emptied(self) -> bool:
        """Wait until the engine took the batch in the slot (so the buffer of the batch before
        it is free again); False when stopping."""
        while not self._to_engine.wait_empty(TICK_S):
            self._beats["prepare"] = time.monotonic()
            if self._stop.is_set():
                return False
        return True

    def _consume(self, stage: str, slot: Slot[Batch], handle: Callable[[Batch], None]) -> None:
        """The loop of a stage fed by `slot`: `handle` each batch until the slot is closed and
        empty, with a heartbeat at least every TICK_S."""
        while True:
            self._beats[stage] = time.monotonic()
            batch = slot.take(TICK_S)
            if batch is not None:
                handle(batch)
            elif slot.closed:
                return

    def _run_infer(self) -> None:
        try:
            self._consume("inference", self._to_engine, self._infer_and_pass)
        finally:
            self._to_post.close()

    def _infer_and_pass(self, batch: Batch) -> None:
        self._infer(batch)
        self._to_post.put(batch)

    def _infer(self, batch: Batch) -> None:
        """One engine call for the whole batch; a failure is recorded on the batch."""
        batch.started_mono = time.monotonic()
        self._beats["inference"] = batch.started_mono
        if batch.error is not None:
            return
        start = time.perf_counter()
        try:
            batch.outputs = batch.detector.infer_batch(batch.tensor)
        except Exception as err:  # an engine failure must not kill the loop; it is counted
            batch.error = repr(err)
        batch.infer_ms = (time.perf_counter() - start) * 1e3

    def _run_post(self) -> None:
        self._consume("post", self._to_post, self._finish)

    def _finish(self, batch: Batch) -> None:
        try:
            self._post.finish(batch)
        finally:
            self._in_flight.done()
