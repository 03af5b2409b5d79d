"""Probation: watch the new model's health after the swap, then commit or roll back."""

from __future__ import annotations

import time

import structlog

from agent.contracts.ota import OtaRejectedError, OtaState, Reason
from agent.ota.activation import SwitchPlan
from agent.ota.parts import SlotParts
from agent.ota.store import Job, LedgerUnreadableError
from agent.ota.validate import Health, ProbationLimits, judge_probation

log = structlog.get_logger(__name__)


class ProbationWatch:
    """Judges the active model's frame window until it is committed or rolled back."""

    def __init__(self, parts: SlotParts) -> None:
        self.parts = parts
        cfg = parts.cfg
        self.limits = ProbationLimits(
            min_frames=cfg.probation_min_frames,
            max_error_rate=cfg.probation_max_error_rate,
            latency_budget_ms=cfg.latency_budget_ms,
            min_detection_ratio=cfg.probation_min_detection_ratio,
            baseline_min_rate=cfg.probation_baseline_min_rate,
        )

    def watch(self, job: Job, since: float) -> None:
        """Watch from `since` (monotonic) for `probation_s`, extended up to 3x for frames."""
        cfg = self.parts.cfg
        end = since + cfg.probation_s
        hard_end = since + 3 * max(cfg.probation_s, 1.0)
        baseline = None
        if job.baseline is not None:
            baseline = Health(job.baseline.frames, 0, None, job.baseline.detections_per_frame)
        while True:
            now = time.monotonic()
            wait = min(0.5, max(0.0, end - now)) if now < end else 0.2
            if self.parts.stop.wait(wait):
                log.info(
                    "stopping during probation; it resumes at the next start",
                    command_id=job.command_id,
                )
                return
            s = self.parts.host.window_stats(since)
            health = Health(s.frames + s.errors, s.errors, s.latency_p99_ms, s.detections_per_frame)
            now = time.monotonic()
            final = now >= end and (health.frames >= cfg.probation_min_frames or now >= hard_end)
            why = judge_probation(health, baseline, self.limits, final)
            if why is not None:
                log.warning("probation failed; rolling back", command_id=job.command_id, why=why)
                self._roll_back(why)
                return
            if final:
                self._commit(job)
                return

    def _commit(self, job: Job) -> None:
        with self.parts.journal.lock:
            self.parts.journal.advance(OtaState.COMMITTED)
            try:
                ledger = self.parts.store.read_ledger()
            except LedgerUnreadableError as err:
                log.error("committed, but the version floor cannot be recorded", error=str(err))
            else:
                m = job.manifest
                self.parts.store.write_ledger(
                    ledger.committed(m.name, m.version, m.kind, m.generation)
                )
            self.parts.store.end_probation()
        log.info("model committed", model=job.model.name, version=job.model.version)

    def _roll_back(self, why: str) -> None:
        """Swap the previous model back in (no trial: it ran before) and end rolled_back."""
        previous = self.parts.store.read_pointer().previous
        try:
            if previous is None:
                raise OtaRejectedError(Reason.ROLLBACK_UNAVAILABLE, "no previous model kept")
            self.parts.activator.switch(previous, SwitchPlan(validate=False))
        except (OtaRejectedError, TimeoutError) as err:
            with self.parts.journal.lock:
                self.parts.store.end_probation()
                self.parts.journal.advance(
                    OtaState.FAILED,
                    reason=Reason.PROBATION_FAILED,
                    detail=f"{why}; rollback impossible: {err}",
                )
            return
        with self.parts.journal.lock:
            self.parts.store.revert()
            self.parts.journal.advance(
                OtaState.ROLLED_BACK, reason=Reason.PROBATION_FAILED, detail=why
            )
            self.parts.store.prune()
