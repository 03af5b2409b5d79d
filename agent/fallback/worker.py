"""The Florence-2 fallback: hard-frame decisions on the hot path, a worker off it.

Thread or process (`fallback.worker`): the default is a child process. Measured with the
tiny model (bench/bench_fallback.py, docs/benchmarks.md), YOLO frames/s with the fallback
saturated / alone: process with SCHED_IDLE 0.95, process with nice 10 only 0.78, thread 0.63
(the generate loop holds the GIL between torch ops). Only the process survives a crash in
native code: a segfault in torch or ONNX Runtime inside a thread kills the whole
daemon (systemd would restart it; the outbox loses nothing, but YOLO stops for the restart),
while a dead child is just a `down` state and a restart with backoff. A process also has its
own GIL (the Python generate loop never competes with the inference loop) and its own nice
level. Thread mode stays for machines where a second interpreter's memory does not fit.

Hot path: `is_hard` (policy + token bucket, a few microseconds) and `submit` (put in a
newest-only single slot) never block. A dispatcher thread takes the slot, runs the worker,
parses, publishes the refinement message and captures the frame.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.contracts.payloads import dump_payload
from agent.fallback.capture import CaptureStore
from agent.fallback.config import FallbackConfig
from agent.fallback.message import build_refinement
from agent.fallback.model_swap import FlorenceModel, SwapSlot
from agent.fallback.parse import FlorenceParseError, parse_generation
from agent.fallback.policy import (
    EmptyTracker,
    HardFrame,
    HardReason,
    Mailbox,
    TokenBucket,
    check_frame,
)
from agent.fallback.process import JobFailed, WorkerCrashed, WorkerProcess
from agent.fallback.prompts import job_prompt
from agent.fallback.runtime import FlorenceInfo, FlorenceModelError, resolve_model
from agent.health.metrics import FrameRecord, FrameWindow
from agent.types import Detections
from agent.util.backoff import backoff_delay
from agent.util.transitions import check_transition, transition_table

log = structlog.get_logger(__name__)


class FallbackState(str, enum.Enum):
    """Worker state as published in health: disabled | idle | busy | down."""

    DISABLED = "disabled"
    IDLE = "idle"
    BUSY = "busy"
    DOWN = "down"


_ALLOWED: dict[FallbackState, frozenset[FallbackState]] = transition_table(
    {
        FallbackState.DISABLED: {FallbackState.DOWN},  # start: down until loaded
        FallbackState.DOWN: {FallbackState.IDLE, FallbackState.DISABLED},
        FallbackState.IDLE: {FallbackState.BUSY, FallbackState.DOWN, FallbackState.DISABLED},
        FallbackState.BUSY: {FallbackState.IDLE, FallbackState.DOWN, FallbackState.DISABLED},
    }
)


class StateMachine:
    """Thread-safe holder of a FallbackState that rejects illegal transitions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = FallbackState.DISABLED

    @property
    def state(self) -> FallbackState:
        return self._state

    def to(self, new: FallbackState) -> None:
        """Move to `new` (staying put is allowed); raise IllegalTransitionError otherwise."""
        with self._lock:
            if new != self._state:
                self._state = check_transition(_ALLOWED, "fallback", self._state, new)


@dataclass(frozen=True)
class Job:
    """One escalated frame with its YOLO verdict, and when it was handed over."""

    hard: HardFrame
    submitted_mono: float


@dataclass(frozen=True)
class FallbackStats:
    """Counters of the fallback since start.

    Attributes:
        state: disabled | idle | busy | down.
        escalations: frames `is_hard` let through (tokens taken).
        replaced: escalated frames replaced in the single slot before the worker took them.
        rate_per_min: escalations in the last 60 s.
        errors: failed jobs, parse failures, crashes and failed loads.
        restarts: worker (re)starts after the first.
        published: refinement messages handed to the publisher.
        last_latency_ms: Florence-2 latency (pre + infer + post) of the last finished job.
        last_error: message of the last error, if any.
        worker_pid: pid of the worker process (process mode), else None.
    """

    state: str
    escalations: int
    replaced: int
    rate_per_min: float
    errors: int
    restarts: int
    published: int
    last_latency_ms: float | None
    last_error: str | None
    worker_pid: int | None


class Fallback:
    """Florence-2 for hard frames: policy on the hot path, worker off it.

    Args:
        cfg: the fallback config.
        device: device id (for capture paths and uploads).
        publish: the publisher's non-blocking submit for the `florence2` stream:
            (camera, seq, payload) -> accepted.
        state_dir: the daemon's state directory (captures default to state_dir/captures).
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        cfg: FallbackConfig,
        device: str,
        publish: Callable[[str, int, bytes], bool],
        state_dir: Path,
        clock: Callable[[], float] = time.monotonic,
        model: FlorenceModel | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model or FlorenceModel(None, None, cfg.model_version)
        self.swaps = SwapSlot()  # the OTA slot's replacements, taken between two jobs
        self.jobs = FrameWindow()  # one record per job: the OTA slot's probation reads it
        self.device = device
        self._publish = publish
        self._f2_seq: dict[str, int] = {}  # next seq of each camera's florence2 stream
        self._state_dir = state_dir
        self._clock = clock
        self._sm = StateMachine()
        self._lock = threading.Lock()
        self._bucket = TokenBucket(cfg.rate, clock())
        self._trackers: dict[str, EmptyTracker] = {}
        self._mailbox: Mailbox[Job] = Mailbox()
        self._recent: collections.deque[float] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: WorkerProcess | None = None
        self._info: FlorenceInfo | None = None
        self._escalations = 0
        self._replaced = 0
        self._errors = 0
        self._restarts = 0
        self._published = 0
        self._last_latency: float | None = None
        self._last_error: str | None = None
        self.capture: CaptureStore | None = None
        if cfg.enabled and cfg.capture.enabled:
            root = cfg.capture.dir or state_dir / "captures"
            self.capture = CaptureStore(
                root,
                cfg.capture.quota_bytes,
                cfg.capture.jpeg_quality,
                pending=cfg.upload is not None,
            )
        self._uploader = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the dispatcher (which loads the worker) and the uploader; no-op if disabled."""
        if not self.cfg.enabled or self._thread is not None:
            return
        self._sm.to(FallbackState.DOWN)
        self._thread = threading.Thread(
            target=self._dispatch, name="florence2-dispatch", daemon=True
        )
        self._thread.start()
        if self.cfg.upload is not None and self.capture is not None:
            from agent.fallback.upload import Uploader

            self._uploader = Uploader(self.cfg.upload, self.device, self.capture)
            self._uploader.start()

    def stop(self, timeout: float) -> None:
        """Stop the dispatcher, the worker and the uploader within about `timeout` seconds."""
        self._stop.set()
        self._mailbox.close()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._uploader is not None:
            self._uploader.stop(max(0.1, deadline - time.monotonic()))
        if self._sm.state != FallbackState.DISABLED:
            self._sm.to(FallbackState.DISABLED)

    # -- hot path --------------------------------------------------------------------------
    def is_hard(self, camera: str, detections: Detections, now_mono: float) -> bool:
        """Policy + sampling + token bucket; True (token consumed) when the frame escalates."""
        if not self.cfg.enabled or self._sm.state == FallbackState.DISABLED:
            return False
        with self._lock:
            tracker = self._trackers.setdefault(camera, EmptyTracker())
            reason = check_frame(detections, self.cfg.policy_for(camera), tracker, now_mono)
            if reason == HardReason.NONE or not self._bucket.try_take(now_mono):
                return False
            self._escalations += 1
            self._recent.append(now_mono)
            return True

    def submit(self, hard: HardFrame) -> None:
        """Hand a hard frame to the worker; replaces a frame still waiting. Never blocks."""
        if not self.cfg.enabled:
            return
        old = self._mailbox.put(Job(hard, self._clock()))
        if old is not None:
            with self._lock:
                self._replaced += 1

    def stats(self) -> FallbackStats:
        now = self._clock()
        with self._lock:
            while self._recent and now - self._recent[0] > 60.0:
                self._recent.popleft()
            return FallbackStats(
                state=self._sm.state.value,
                escalations=self._escalations,
                replaced=self._replaced,
                rate_per_min=float(len(self._recent)),
                errors=self._errors,
                restarts=self._restarts,
                published=self._published,
                last_latency_ms=self._last_latency,
                last_error=self._last_error,
                worker_pid=self._worker.pid if self._worker is not None else None,
            )

    # -- worker side -----------------------------------------------------------------------
    def _error(self, message: str, **kw: object) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = message
        log.warning("florence2 fallback error", error=message, **kw)

    def _backoff(self, failures: int) -> float:
        """Restart delay after `failures` (>= 1) failures in a row: restart_min_s doubling."""
        return backoff_delay(max(0, failures - 1), self.cfg.restart_min_s, self.cfg.restart_max_s)

    def _ensure_worker(self) -> None:
        model_dir = self.model.model_dir or resolve_model(self.cfg.model)
        self._worker = WorkerProcess(self.cfg, model_dir)
        self._info = self._worker.start(self._stop)
        self._sm.to(FallbackState.IDLE)
        log.info(
            "florence2 worker ready",
            model=self._info.name,
            runtime=self.cfg.runtime,
            mode=self.cfg.worker,
            pid=self._worker.pid,
        )

    def _drop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop(2.0)
            self._worker = None

    def _dispatch(self) -> None:
        """Keep a worker running and feed it jobs until stopped; restart it after failures."""
        failures = 0
        started_once = False
        while not self._stop.is_set():
            if self._install_swap():
                failures = 0
            if self._worker is None:
                if not self._start_worker(failures):
                    failures += 1
                    continue
                if started_once:
                    with self._lock:
                        self._restarts += 1
                started_once = True
            job = self._mailbox.get(timeout=0.2)
            if job is None:
                if self._worker is not None and not self._worker.alive():
                    code = self._worker.exitcode
                    failures += 1
                    self._worker_lost(f"worker died while idle (exit code {code})", failures)
                continue
            self._sm.to(FallbackState.BUSY)
            try:
                self._run_job(job, self._worker, self._info)
                failures = 0
            except WorkerCrashed as err:
                if self._stop.is_set():
                    break
                self._job_done(job, ok=False)
                failures += 1
                self._worker_lost(f"worker crashed: {err}", failures, camera=job.hard.frame.camera)
                continue
            if self._sm.state == FallbackState.BUSY:
                self._sm.to(FallbackState.IDLE)
        self._drop_worker()

    def _install_swap(self) -> bool:
        """Put a candidate the OTA slot offered in service (between two jobs); True if one was."""
        candidate = self.swaps.take()
        if candidate is None:
            return False
        old = self._worker
        self._worker, self._info, self.model = (
            candidate.worker,
            candidate.runtime_info,
            candidate.model,
        )
        if old is not None:
            old.stop(2.0)
        self._sm.to(FallbackState.IDLE)
        log.info("florence2 model replaced", model=self.model.name, version=self.model.version)
        return True

    def _job_done(self, job: Job, ok: bool, latency_ms: float = 0.0, found: int = 0) -> None:
        """One record per finished job for the OTA probation (errors, latency, detections)."""
        age_ms = (self._clock() - job.submitted_mono) * 1e3
        self.jobs.add(FrameRecord(self._clock(), latency_ms, found, age_ms, error=not ok))

    def _start_worker(self, failures: int) -> bool:
        """Start and load a worker; on failure count it and wait out the backoff (False)."""
        try:
            self._ensure_worker()
        except (FlorenceModelError, WorkerCrashed) as err:
            self._drop_worker()
            if self._stop.is_set():
                return False
            delay = self._backoff(failures + 1)
            self._error(f"worker start failed: {err}", retry_in_s=delay)
            self._stop.wait(delay)
            return False
        return True

    def _worker_lost(self, message: str, failures: int, **kw: object) -> None:
        """Drop a dead or crashed worker, go DOWN, record why and wait out the backoff."""
        self._drop_worker()
        self._sm.to(FallbackState.DOWN)
        delay = self._backoff(failures)
        self._error(message, retry_in_s=delay, **kw)
        self._stop.wait(delay)

    def _run_job(self, job: Job, worker: WorkerProcess | None, info: FlorenceInfo | None) -> None:
        if worker is None or info is None:
            raise WorkerCrashed("no worker")
        task, hard = self.cfg.task, job.hard
        try:
            prompt, region = job_prompt(task, hard.class_names, hard.yolo)
            gen = worker.run(hard.frame.image, prompt, self.cfg.max_new_tokens, self._stop)
        except (JobFailed, ValueError) as err:
            self._job_done(job, ok=False)
            self._error(f"job failed: {err}", camera=hard.frame.camera, seq=hard.yolo.seq)
            return
        t0 = time.perf_counter()
        try:
            result = parse_generation(
                task, gen.text, gen.image_size, hard.class_names, region=region
            )
        except FlorenceParseError as err:
            self._job_done(job, ok=False)
            self._error(str(err), camera=hard.frame.camera, seq=hard.yolo.seq)
            return
        post_ms = (time.perf_counter() - t0) * 1e3
        # The camera's florence2 stream: its own seq, +1 per message (a refusal leaves a gap).
        seq = self._f2_seq.get(hard.frame.camera, 0)
        self._f2_seq[hard.frame.camera] = seq + 1
        msg = build_refinement(
            hard.yolo,
            result,
            self.model.report(info),
            self.model.version,
            gen,
            post_ms,
            hard.class_names,
            seq=seq,
        )
        self._job_done(job, ok=True, latency_ms=msg.latency_ms.total, found=len(msg.detections))
        accepted = self._publish(hard.frame.camera, seq, dump_payload(msg))
        with self._lock:
            self._last_latency = msg.latency_ms.total
            if accepted:
                self._published += 1
        if not accepted:
            self._error(
                "publisher refused the florence2 message (queue full)",
                camera=hard.frame.camera,
                seq=hard.yolo.seq,
            )
        if self.capture is not None:
            try:
                self.capture.save(hard.frame, hard.yolo, msg, result, hard.class_names)
            except OSError as err:
                self._error(f"capture failed: {err}", camera=hard.frame.camera, seq=hard.yolo.seq)
