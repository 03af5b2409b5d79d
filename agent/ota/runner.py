"""The job runner: carries out one accepted command on its own thread.

deploy: download -> verify -> install -> (build) -> activation (`Activator`) -> probation;
rollback: the kept previous model -> activation -> committed. Every failure ends the job in
exactly one terminal state with a reason; a bug ends it as `internal_error`, never a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import structlog

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaAction, OtaCommand, OtaRejectedError, OtaState, Progress, Reason
from agent.ota.activation import SwitchPlan
from agent.ota.config import OtaConfig
from agent.ota.download import DownloadSettings, download_artifact, verify_artifact
from agent.ota.parts import SlotParts
from agent.ota.probation import ProbationWatch
from agent.ota.store import Baseline, Job, ModelRecord
from agent.trust.model_check import check_artifact

log = structlog.get_logger(__name__)

BuildHook = Callable[[Path, Manifest], object]
"""Prepare an installed, verified artifact for loading (TensorRT: build or reuse the cached
engine, e.g. `agent.engines.build.prepare_model(engine_cfg, path)`; Florence-2: unpack the
archive); `host.load_detector` is then called with the same artifact path. Raises on failure
(reported as build_failed, or the OtaRejectedError's own reason)."""


def download_settings(cfg: OtaConfig) -> DownloadSettings:
    """The download limits of `cfg` (the fields named alike) and the device's gateway token."""
    limits = cfg.model_dump(include={f.name for f in fields(DownloadSettings)})
    return DownloadSettings(**limits, bearer_token=cfg.gateway_token())


class JobRunner:
    """One job thread at a time; `busy` while a command has not reached its terminal state."""

    def __init__(self, parts: SlotParts, build: BuildHook | None) -> None:
        self.parts = parts
        self.build = build
        self.probation = ProbationWatch(parts)
        self._download = download_settings(parts.cfg)
        self.thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """A command is being carried out (it has not reached its terminal state)."""
        job = self.parts.journal.job
        alive = self.thread is not None and self.thread.is_alive()
        return alive and job is not None and not job.state.terminal

    def start(self, command: OtaCommand) -> None:
        """Carry out the accepted command (the journal's current job) on the job thread."""
        self._spawn(self._run, command)

    def resume_probation(self, job: Job) -> None:
        """After a restart with the active model on probation: watch it again."""
        self._spawn(self.probation.watch, job, time.monotonic())

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name="ota-job", daemon=True)
        self.thread = thread
        thread.start()

    def _run(self, command: OtaCommand) -> None:
        job = self.parts.journal.job
        assert job is not None
        bound = log.bind(command_id=job.command_id, model=job.model.name, version=job.model.version)
        installed: ModelRecord | None = None
        try:
            if command.action is OtaAction.ROLLBACK:
                self._roll_back_to_previous(job)
                return
            installed = self._fetch_and_install(job, command)
            self._build(installed)
            self._deploy(installed)
        except OtaRejectedError as err:
            bound.warning("OTA update failed", reason=err.reason.value, detail=err.detail)
            self._cleanup(job.command_id, installed)
            self.parts.journal.fail(err.reason, err.detail)
        except Exception as err:  # a bug: report it as a terminal state, never hang
            bound.exception("OTA update crashed")
            self._cleanup(job.command_id, installed)
            self.parts.journal.fail(Reason.INTERNAL_ERROR, repr(err))

    def _fetch_and_install(self, job: Job, command: OtaCommand) -> ModelRecord:
        """downloading -> verifying -> install; return the installed record."""
        manifest = job.manifest
        assert manifest is not None and command.artifact_url is not None
        staged = self.parts.store.staging_path(job.command_id)
        job = self.parts.journal.advance(OtaState.DOWNLOADING)
        download_artifact(
            command.artifact_url,
            staged,
            manifest.length,
            self._download,
            progress=lambda have, total: self.parts.journal.publish(
                job, Progress(bytes=have, total=total)
            ),
            cancel=self.parts.stop,
        )
        self.parts.journal.advance(OtaState.VERIFYING)
        verify_artifact(staged, manifest.length, manifest.sha256)
        check_artifact(staged, manifest)
        with self.parts.journal.lock:
            return self.parts.store.install(staged, manifest)

    def _build(self, installed: ModelRecord) -> None:
        """building (TensorRT: the engine from the installed ONNX), when there is a hook."""
        if self.build is None:
            return
        assert installed.manifest is not None
        self.parts.journal.advance(OtaState.BUILDING)
        try:
            self.build(Path(installed.path), installed.manifest)
        except OtaRejectedError:  # the hook's own reason (e.g. bad_archive) stands
            raise
        except Exception as err:  # any build failure is reported, not raised
            raise OtaRejectedError(Reason.BUILD_FAILED, repr(err)) from None

    def _deploy(self, record: ModelRecord) -> None:
        """loading -> validating -> pointer -> swap -> active -> probation."""
        job = self.parts.journal.advance(OtaState.LOADING)
        old = self.parts.store.read_pointer().running()
        if old is None:
            raise OtaRejectedError(Reason.INTERNAL_ERROR, "the running model is not recorded")
        s = self.parts.host.window_stats(time.monotonic() - self.parts.cfg.baseline_window_s)
        baseline = Baseline(frames=s.frames, detections_per_frame=s.detections_per_frame)

        def point_at_new() -> None:
            with self.parts.journal.lock:
                self.parts.store.activate(
                    record, old, job.command_id, self.parts.cfg.crash_loop_boots
                )

        plan = SwitchPlan(
            validate=True,
            on_validating=lambda: self.parts.journal.advance(OtaState.VALIDATING),
            before_swap=point_at_new,
            restore=old,
        )
        try:
            report = self.parts.activator.switch(record, plan)
        except TimeoutError as err:
            with self.parts.journal.lock:
                self.parts.store.revert()
            raise OtaRejectedError(Reason.SWAP_FAILED, str(err)) from None
        swapped = time.monotonic()
        job = self.parts.journal.advance(OtaState.ACTIVE, swap=report, baseline=baseline)
        self.probation.watch(job, swapped)

    def _roll_back_to_previous(self, job: Job) -> None:
        """A signed rollback to the kept previous model: load, validate, swap, commit."""
        pointer = self.parts.store.read_pointer()
        previous = pointer.previous
        if previous is None or previous.sha256 != job.model.sha256:
            raise OtaRejectedError(Reason.ROLLBACK_UNAVAILABLE, "the previous model is gone")
        self.parts.journal.advance(OtaState.LOADING)
        plan = SwitchPlan(
            validate=True,
            on_validating=lambda: self.parts.journal.advance(OtaState.VALIDATING),
            restore=pointer.running(),
        )
        try:
            self.parts.activator.switch(previous, plan)
        except TimeoutError as err:
            raise OtaRejectedError(Reason.SWAP_FAILED, str(err)) from None
        # journal first: a kill before the pointer write settles as rolled_back (old model runs)
        self.parts.journal.advance(OtaState.ACTIVE)
        with self.parts.journal.lock:
            self.parts.store.set_active(previous)
            self.parts.journal.advance(OtaState.COMMITTED)
            self.parts.store.prune()

    def _cleanup(self, command_id: str, installed: ModelRecord | None) -> None:
        """Remove what a failed command left: its staging file and an unused installed copy."""
        with self.parts.journal.lock:
            self.parts.store.staging_path(command_id).unlink(missing_ok=True)
            if installed is not None:
                self.parts.store.remove(installed)
