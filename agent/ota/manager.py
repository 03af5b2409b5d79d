"""The device's OTA manager: commands in, model swapped (or not), state out.

Threads: the MQTT network thread only queues payloads (`_on_message`); one intake thread
validates each command in the protocol's order and answers at once (rejections, busy,
redeliveries); one job thread at a time carries out an accepted command:
download -> verify -> (build) -> install -> load -> validate -> swap -> probation ->
commit, or fail / roll back with a reason. Every state change is written to the journal
(`job.json`) before it is published retained on `edge/<device>/ota/state`, so a restart
resolves an interrupted command to exactly one terminal state (`ModelStore.resolve_startup`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog

from agent.manifest import DEFAULT_KIND, Manifest
from agent.messages.topics import Topics
from agent.ota.config import OtaConfig
from agent.ota.download import DownloadSettings, download_artifact, verify_artifact
from agent.ota.host import ModelHost, RetainedPublisher
from agent.ota.machine import check_transition
from agent.ota.model_check import check_artifact
from agent.ota.priority import lowered_priority
from agent.ota.protocol import (
    ModelId,
    OtaAction,
    OtaCommand,
    OtaRejectedError,
    OtaState,
    OtaStateMessage,
    Progress,
    Reason,
    SwapReport,
    command_digest,
    format_rfc3339,
    parse_command,
    state_bytes,
)
from agent.ota.signing import trusted_key_map
from agent.ota.store import Baseline, Job, ModelRecord, ModelStore
from agent.ota.validate import (
    SEQUENCE_CONSUMING,
    Delivery,
    Health,
    ModelView,
    ProbationLimits,
    check_detections,
    check_latency,
    check_raw_outputs,
    judge_probation,
    validate_command,
)

if TYPE_CHECKING:
    from agent.engines.build import Platform
    from agent.engines.detector import Detector

log = structlog.get_logger(__name__)

BuildHook = Callable[[Path, Manifest], object]
"""Prepare an installed, verified artifact for loading (TensorRT: build or reuse the cached
engine, e.g. `agent.engines.build.prepare_model(engine_cfg, path)`); `host.load_detector`
is then called with the same artifact path. Raises on failure (reported as build_failed)."""

_STOP = object()


class OtaManager:
    """Receives signed OTA commands and carries them out against a `ModelHost`."""

    def __init__(
        self,
        cfg: OtaConfig,
        topics: Topics,
        device: str,
        state_dir: Path,
        host: ModelHost,
        publisher: RetainedPublisher,
        *,
        build: BuildHook | None = None,
        runnable_formats: frozenset[str] = frozenset({"onnx"}),
        platform: Platform | None = None,
        loader_nice: int = 10,
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self.device = device
        self.host = host
        self.publisher = publisher
        self.store = ModelStore(Path(state_dir) / "models")
        self.build = build
        self.runnable_formats = runnable_formats
        self.platform = platform  # TensorRT + GPU, for prebuilt engines' compat
        self.loader_nice = loader_nice  # hot swaps load/validate below the loop's priority
        self._gateway_keys = trusted_key_map(cfg.gateway_keys)
        self._release_keys = trusted_key_map(cfg.release_keys)
        self._inbox: queue.Queue[object] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._lock = threading.RLock()  # guards journal, ledger and pointer read-modify-write
        self._intake: threading.Thread | None = None
        self._job_thread: threading.Thread | None = None
        self._job: Job | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._listening = False
        self._download = DownloadSettings(
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            deadline_s=cfg.download_deadline_s,
            attempts=cfg.download_attempts,
            backoff_s=cfg.retry_backoff_s,
            disk_margin_bytes=cfg.disk_margin_bytes,
            progress_interval_s=cfg.progress_interval_s,
            bearer_token=cfg.gateway_token(),
        )
        self._limits = ProbationLimits(
            min_frames=cfg.probation_min_frames,
            max_error_rate=cfg.probation_max_error_rate,
            latency_budget_ms=cfg.latency_budget_ms,
            min_detection_ratio=cfg.probation_min_detection_ratio,
            baseline_min_rate=cfg.probation_baseline_min_rate,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def listen(self) -> None:
        """Subscribe to this device's command topic. Safe before the publisher connects and
        before `start`: commands wait in the inbox until the intake thread runs."""
        if not self._listening:
            self._listening = True
            self.publisher.subscribe(self.topics.ota_command, self._on_message)

    def start(self) -> None:
        """Publish the current state, resume a probation in progress, take commands."""
        with self._lock:
            self._job = self.store.read_job()
        job = self._job
        if job is not None:
            self._publish(job)
            if job.state.terminal:
                self._mark_published(job)
            elif job.state is OtaState.ACTIVE:
                log.info("resuming probation after a restart", command_id=job.command_id)
                self._spawn(self._resume_probation, job)
        else:
            self._publish_idle()
        self._intake = threading.Thread(target=self._intake_loop, name="ota-intake", daemon=True)
        self._intake.start()
        self.listen()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop taking commands; an update in progress ends as failed (interrupted), a
        probation is left to resume at the next start."""
        self._stop.set()
        try:
            self._inbox.put_nowait(_STOP)
        except queue.Full:
            pass
        deadline = time.monotonic() + timeout
        for t in (self._intake, self._job_thread):
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        """Block until no command is being carried out (for tests and benches)."""
        return self._idle.wait(timeout)

    @property
    def busy(self) -> bool:
        """A command is being carried out (it has not reached its terminal state)."""
        job = self._job
        alive = self._job_thread is not None and self._job_thread.is_alive()
        return alive and job is not None and not job.state.terminal

    # -- intake -----------------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        """Network-thread callback: queue the payload, never block."""
        try:
            self._inbox.put_nowait(bytes(payload))
        except queue.Full:
            log.error("OTA command queue full; command dropped", topic=topic, size=len(payload))

    def _intake_loop(self) -> None:
        while not self._stop.is_set():
            item = self._inbox.get()
            if item is _STOP:
                return
            assert isinstance(item, bytes)
            try:
                self.handle_payload(item)
            except Exception:  # a bug must not kill command intake; it is logged
                log.exception("OTA command handling failed")

    def handle_payload(self, payload: bytes) -> None:
        """Validate one command payload and answer it (runs on the intake thread)."""
        command: OtaCommand | None = None
        try:
            command = parse_command(payload, self.cfg.max_command_bytes)
            with self._lock:
                ledger = self.store.read_ledger()
                pointer = self.store.read_pointer()
                running = pointer.running()
                models = ModelView(
                    active=_triple(running),
                    previous=_triple(pointer.previous),
                    active_generation=None if running is None else _generation(running),
                    active_kind=_kind(running),
                )
                verdict = validate_command(
                    command,
                    device=self.device,
                    gateway_keys=self._gateway_keys,
                    release_keys=self._release_keys,
                    ledger=ledger,
                    models=models,
                    busy=self.busy,
                    runnable_formats=self.runnable_formats,
                    max_artifact_bytes=self.cfg.max_artifact_bytes,
                    platform=self.platform,
                    allowed_models=frozenset(self.cfg.allowed_models),
                )
                if verdict.delivery is Delivery.DUPLICATE:
                    log.info(
                        "command delivered again; re-publishing its state",
                        command_id=command.command_id,
                    )
                    if self._job is not None and self._job.command_id == command.command_id:
                        self._publish(self._job)
                    return
                self.store.write_ledger(ledger.record(command))
                assert verdict.manifest is not None
                job = Job(
                    command_id=command.command_id,
                    digest=command_digest(command),
                    action=command.action,
                    model=_model_id(verdict.manifest),
                    manifest=verdict.manifest,
                    state=OtaState.IDLE,
                    ts=_now(),
                )
                self._job = job
                self._idle.clear()
                self._spawn(self._run, job, command)
        except OtaRejectedError as err:
            self._reject(command, err, payload)

    def _reject(self, command: OtaCommand | None, err: OtaRejectedError, payload: bytes) -> None:
        log.warning(
            "OTA command rejected",
            reason=err.reason.value,
            detail=err.detail,
            command_id=command.command_id if command else None,
            size=len(payload),
        )
        if command is not None and err.reason in SEQUENCE_CONSUMING:
            with self._lock:
                self.store.write_ledger(self.store.read_ledger().record(command))
                job = Job(
                    command_id=command.command_id,
                    digest=command_digest(command),
                    action=command.action,
                    model=_model_id(command.manifest.manifest),
                    manifest=command.manifest.manifest,
                    state=OtaState.REJECTED,
                    reason=err.reason,
                    detail=err.detail,
                    ts=_now(),
                    published=True,
                )
                self.store.write_job(job)
                self._job = job
            self._publish(job)
            return
        msg = OtaStateMessage(
            device=self.device,
            state=OtaState.REJECTED,
            command_id=command.command_id if command else None,
            action=command.action if command else None,
            model=_model_id(command.manifest.manifest) if command else None,
            active_model=self._active_id(),
            reason=err.reason,
            detail=err.detail[:2000],
            ts=_now(),
            last_sequence=self._last_sequence(),
        )
        self.publisher.publish_retained(self.topics.ota_state, state_bytes(msg))
        current = self._job
        if self.busy and current is not None:
            self._publish(current)  # the retained state goes back to the command in progress

    # -- the job ----------------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        self._idle.clear()

        def run() -> None:
            try:
                target(*args)
            finally:
                if threading.current_thread() is self._job_thread:
                    self._idle.set()

        thread = threading.Thread(target=run, name="ota-job", daemon=True)
        self._job_thread = thread
        thread.start()

    def _run(self, job: Job, command: OtaCommand) -> None:
        bound = log.bind(command_id=job.command_id, model=job.model.name, version=job.model.version)
        installed: ModelRecord | None = None
        try:
            if command.action is OtaAction.ROLLBACK:
                self._rollback_action(job)
                return
            staged = self.store.staging_path(job.command_id)
            job = self._set(job, OtaState.DOWNLOADING)
            assert command.artifact_url is not None
            download_artifact(
                command.artifact_url,
                staged,
                job.manifest.length,
                self._download,
                progress=lambda have, total: self._progress(job, have, total),
                cancel=self._stop,
            )
            job = self._set(job, OtaState.VERIFYING)
            verify_artifact(staged, job.manifest.length, job.manifest.sha256)
            check_artifact(staged, job.manifest)
            with self._lock:
                installed = self.store.install(staged, job.manifest)
            if self.build is not None:
                job = self._set(job, OtaState.BUILDING)
                try:
                    self.build(Path(installed.path), job.manifest)
                except Exception as err:  # any build failure is reported, not raised
                    raise OtaRejectedError(Reason.BUILD_FAILED, repr(err)) from None
            self._activate(job, installed)
        except OtaRejectedError as err:
            bound.warning("OTA update failed", reason=err.reason.value, detail=err.detail)
            self._cleanup(job.command_id, installed)
            self._finish_failed(job, err.reason, err.detail)
        except Exception as err:  # a bug: report it as a terminal state, never hang
            bound.exception("OTA update crashed")
            self._cleanup(job.command_id, installed)
            self._finish_failed(job, Reason.INTERNAL_ERROR, repr(err))

    def _cleanup(self, command_id: str, installed: ModelRecord | None) -> None:
        """Remove what a failed command left: its staging file and an unused installed copy."""
        with self._lock:
            self.store.staging_path(command_id).unlink(missing_ok=True)
            if installed is not None:
                self.store.remove(installed)

    def _finish_failed(self, job: Job, reason: Reason, detail: str) -> None:
        with self._lock:
            current = self._job if self._job is not None else job
            if current.state.terminal:
                return
            self._set(current, OtaState.FAILED, reason=reason, detail=detail)

    def _activate(self, job: Job, record: ModelRecord) -> None:
        """Load, validate, swap (hot or pause mode), then probation."""
        job = self._set(job, OtaState.LOADING)
        old_record = self.store.read_pointer().running()
        if old_record is None:
            raise OtaRejectedError(Reason.INTERNAL_ERROR, "the running model is not recorded")
        if self.cfg.swap_mode == "pause":
            self._activate_paused(job, record, old_record)
            return
        with lowered_priority(self.loader_nice):
            t0 = time.monotonic()
            new = self._load(record)
            load_ms = (time.monotonic() - t0) * 1e3
            job = self._set(job, OtaState.VALIDATING)
            try:
                self._validate(new)
            except BaseException:
                new.close()
                raise
        baseline = self._baseline()
        with self._lock:
            self.store.activate(record, old_record, job.command_id, self.cfg.crash_loop_boots)
        try:
            old = self.host.swap(new, self.cfg.swap_timeout_s)
        except TimeoutError as err:
            with self._lock:
                self.store.revert()
            new.close()
            raise OtaRejectedError(Reason.SWAP_FAILED, str(err)) from None
        old.close()
        swap_mono = time.monotonic()
        report = SwapReport(mode="hot", pause_ms=0.0, load_ms=round(load_ms, 3))
        job = self._set(job, OtaState.ACTIVE, swap=report, baseline=baseline)
        self._probation(job, swap_mono)

    def _activate_paused(self, job: Job, record: ModelRecord, old_record: ModelRecord) -> None:
        """Pause inference, unload the old model, load + validate the new one, swap, resume."""
        baseline = self._baseline()
        self.host.pause()
        t_pause = time.monotonic()
        resumed = False
        try:
            self.host.active_detector().close()
            t0 = time.monotonic()
            try:
                new = self._load(record)
                load_ms = (time.monotonic() - t0) * 1e3
                job = self._set(job, OtaState.VALIDATING)
                try:
                    self._validate(new)
                except BaseException:
                    new.close()
                    raise
            except OtaRejectedError:
                self.host.swap(self._load(old_record), self.cfg.swap_timeout_s)
                raise
            with self._lock:
                self.store.activate(record, old_record, job.command_id, self.cfg.crash_loop_boots)
            self.host.swap(new, self.cfg.swap_timeout_s)
            self.host.resume()
            resumed = True
            pause_ms = (time.monotonic() - t_pause) * 1e3
        finally:
            if not resumed:
                self.host.resume()
        swap_mono = time.monotonic()
        log.info("pause-mode swap", pause_ms=round(pause_ms, 1), load_ms=round(load_ms, 1))
        report = SwapReport(mode="pause", pause_ms=round(pause_ms, 3), load_ms=round(load_ms, 3))
        job = self._set(job, OtaState.ACTIVE, swap=report, baseline=baseline)
        self._probation(job, swap_mono)

    def _load(self, record: ModelRecord) -> Detector:
        if record.manifest is None:
            raise OtaRejectedError(Reason.LOAD_FAILED, f"{record.path} has no manifest")
        try:
            return self.host.load_detector(Path(record.path), record.manifest)
        except Exception as err:  # EngineError and whatever a broken model makes the runtime raise
            raise OtaRejectedError(Reason.LOAD_FAILED, f"{type(err).__name__}: {err}") from None

    def _validate(self, new: Detector) -> None:
        """Run the new model on recent real frames: it runs, its output is sane and fast."""
        from agent.engines.yolo import Letterboxer

        frames = self.host.recent_frames(self.cfg.validation_frames)
        images = [f.image for f in frames]
        if not images:
            h, w = new.info.input_size
            log.warning("no recent frames to validate on; using a blank frame")
            images = [np.full((h, w, 3), 114, dtype=np.uint8)]
        latencies: list[float] = []
        nc = len(new.info.class_names)
        max_det = new.params.max_detections
        for i, image in enumerate(images):
            try:
                if i == 0:
                    tensor, _ = Letterboxer(new.info.input_size)(image)
                    problem = check_raw_outputs(new.engine.infer(tensor))
                    if problem:
                        raise OtaRejectedError(Reason.VALIDATION_FAILED, f"raw outputs: {problem}")
                dets, timings = new.detect(image)
            except OtaRejectedError:
                raise
            except Exception as err:  # the new model crashing on a real frame is the finding
                raise OtaRejectedError(
                    Reason.VALIDATION_FAILED, f"crashed on recent frame {i}: {err!r}"
                ) from None
            problem = check_detections(dets, (image.shape[0], image.shape[1]), nc, max_det)
            if problem:
                raise OtaRejectedError(Reason.VALIDATION_FAILED, f"frame {i}: {problem}")
            latencies.append(timings.total)
        problem = check_latency(latencies, self.cfg.latency_budget_ms)
        if problem:
            raise OtaRejectedError(Reason.VALIDATION_FAILED, problem)

    def _baseline(self) -> Baseline:
        s = self.host.window_stats(time.monotonic() - self.cfg.baseline_window_s)
        return Baseline(frames=s.frames, detections_per_frame=s.detections_per_frame)

    # -- probation --------------------------------------------------------------------------------
    def _resume_probation(self, job: Job) -> None:
        self._probation(job, time.monotonic())

    def _probation(self, job: Job, since: float) -> None:
        cfg = self.cfg
        end = since + cfg.probation_s
        hard_end = since + 3 * max(cfg.probation_s, 1.0)
        baseline = None
        if job.baseline is not None:
            baseline = Health(job.baseline.frames, 0, None, job.baseline.detections_per_frame)
        while True:
            now = time.monotonic()
            wait = min(0.5, max(0.0, end - now)) if now < end else 0.2
            if self._stop.wait(wait):
                log.info(
                    "stopping during probation; it resumes at the next start",
                    command_id=job.command_id,
                )
                return
            s = self.host.window_stats(since)
            health = Health(s.frames + s.errors, s.errors, s.latency_p99_ms, s.detections_per_frame)
            now = time.monotonic()
            final = now >= end and (health.frames >= cfg.probation_min_frames or now >= hard_end)
            why = judge_probation(health, baseline, self._limits, final)
            if why is not None:
                log.warning("probation failed; rolling back", command_id=job.command_id, why=why)
                self._rollback_after_probation(job, why)
                return
            if final:
                self._commit(job)
                return

    def _commit(self, job: Job) -> None:
        with self._lock:
            job = self._set(job, OtaState.COMMITTED)
            self.store.write_ledger(
                self.store.read_ledger().committed(
                    job.model.name, job.model.version, job.manifest.kind, job.manifest.generation
                )
            )
            self.store.end_probation()
        log.info("model committed", model=job.model.name, version=job.model.version)

    def _rollback_after_probation(self, job: Job, why: str) -> None:
        previous = self.store.read_pointer().previous
        try:
            if previous is None:
                raise OtaRejectedError(Reason.ROLLBACK_UNAVAILABLE, "no previous model kept")
            self._swap_to(previous)
        except (OtaRejectedError, TimeoutError) as err:
            with self._lock:
                self.store.end_probation()
                self._set(
                    job,
                    OtaState.FAILED,
                    reason=Reason.PROBATION_FAILED,
                    detail=f"{why}; rollback impossible: {err}",
                )
            return
        with self._lock:
            self.store.revert()
            self._set(job, OtaState.ROLLED_BACK, reason=Reason.PROBATION_FAILED, detail=why)
            self.store.prune()

    def _swap_to(self, record: ModelRecord) -> None:
        """Load `record` and swap it in (pause mode unloads first)."""
        if self.cfg.swap_mode == "pause":
            self.host.pause()
            try:
                self.host.active_detector().close()
                self.host.swap(self._load(record), self.cfg.swap_timeout_s)
            finally:
                self.host.resume()
            return
        with lowered_priority(self.loader_nice):
            new = self._load(record)
        try:
            old = self.host.swap(new, self.cfg.swap_timeout_s)
        except TimeoutError:
            new.close()
            raise
        old.close()

    def _rollback_action(self, job: Job) -> None:
        """A signed rollback to the kept previous model: load, validate, swap, commit."""
        pointer = self.store.read_pointer()
        previous = pointer.previous
        if previous is None or previous.sha256 != job.model.sha256:
            raise OtaRejectedError(Reason.ROLLBACK_UNAVAILABLE, "the previous model is gone")
        job = self._set(job, OtaState.LOADING)
        try:
            if self.cfg.swap_mode == "hot":
                with lowered_priority(self.loader_nice):
                    new = self._load(previous)
                job = self._set(job, OtaState.VALIDATING)
                try:
                    with lowered_priority(self.loader_nice):
                        self._validate(new)
                    old = self.host.swap(new, self.cfg.swap_timeout_s)
                except BaseException:
                    new.close()
                    raise
                old.close()
            else:
                job = self._set(job, OtaState.VALIDATING)
                self._swap_to(previous)
        except TimeoutError as err:
            raise OtaRejectedError(Reason.SWAP_FAILED, str(err)) from None
        # journal first: a kill before the pointer write settles as rolled_back (old model runs)
        job = self._set(job, OtaState.ACTIVE)
        with self._lock:
            self.store.set_active(previous)
            self._set(job, OtaState.COMMITTED)
            self.store.prune()

    # -- state -----------------------------------------------------------------------------------
    def _set(
        self,
        job: Job,
        state: OtaState,
        *,
        reason: Reason | None = None,
        detail: str | None = None,
        swap: SwapReport | None = None,
        baseline: Baseline | None = None,
        publish: bool = True,
    ) -> Job:
        """Check the transition, write the journal, then publish."""
        with self._lock:
            check_transition(job.state, state)
            update: dict[str, object] = {
                "state": state,
                "ts": _now(),
                "reason": reason,
                "detail": detail[:2000] if detail else None,
            }
            if swap is not None:
                update["swap"] = swap
            if baseline is not None:
                update["baseline"] = baseline
            job = job.model_copy(update=update)
            self.store.write_job(job)
            self._job = job
        if publish:
            self._publish(job)
            if state.terminal:
                self._mark_published(job)
        log.info(
            "OTA state",
            command_id=job.command_id,
            state=state.value,
            reason=reason.value if reason else None,
        )
        return job

    def _mark_published(self, job: Job) -> None:
        with self._lock:
            if self._job is not None and self._job.command_id == job.command_id:
                self._job = self._job.model_copy(update={"published": True})
                self.store.write_job(self._job)

    def _progress(self, job: Job, have: int, total: int) -> None:
        self._publish(job, Progress(bytes=have, total=total))

    def _active_id(self) -> ModelId | None:
        try:
            info = self.host.active_detector().info
        except Exception:  # the host may be between models; the state still goes out
            return None
        return ModelId(name=info.name, version=info.version, sha256=info.sha256)

    def _last_sequence(self) -> int:
        """Highest sequence accepted, from the ledger: the gateway numbers its next command
        above it (a gateway restored from an old backup resumes without manual edits)."""
        with self._lock:
            return self.store.read_ledger().last_sequence

    def _publish(self, job: Job, progress: Progress | None = None) -> None:
        msg = OtaStateMessage(
            device=self.device,
            state=job.state,
            command_id=job.command_id,
            action=job.action,
            model=job.model,
            active_model=self._active_id(),
            progress=progress,
            reason=job.reason,
            detail=job.detail,
            swap=job.swap,
            ts=job.ts,
            last_sequence=self._last_sequence(),
        )
        self.publisher.publish_retained(self.topics.ota_state, state_bytes(msg))

    def _publish_idle(self) -> None:
        msg = OtaStateMessage(
            device=self.device,
            state=OtaState.IDLE,
            active_model=self._active_id(),
            ts=_now(),
            last_sequence=self._last_sequence(),
        )
        self.publisher.publish_retained(self.topics.ota_state, state_bytes(msg))


def _now() -> str:
    return format_rfc3339(time.time())


def _model_id(m: Manifest) -> ModelId:
    return ModelId(name=m.name, version=m.version, sha256=m.sha256)


def _generation(record: ModelRecord) -> int | None:
    """The running model's generation; None for a model without a (signed) manifest."""
    return None if record.manifest is None else record.manifest.generation


def _kind(record: ModelRecord | None) -> str:
    return DEFAULT_KIND if record is None or record.manifest is None else record.manifest.kind


def _triple(record: ModelRecord | None) -> tuple[str, int, str] | None:
    return None if record is None else (record.name, record.version, record.sha256)
