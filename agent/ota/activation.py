"""Bringing a model into the inference loop: one path, hot or paused.

`Activator.switch` is the only way a model gets in: (memory-limited trial in a child) -> load
-> trial on recent frames -> `before_swap` (the pointer) -> `host.swap`. The swap mode is the
one parameter that differs:

* hot: load and try beside the running model at a lowered CPU priority, swap between frames;
* pause: pause the loop and unload the running model first (small memory), resume after the
  swap; if anything fails once the old model is unloaded, the `restore` model goes back in
  before the loop resumes. The pause is measured.

Detectors are owned by the host (the pipeline): the activator asks it to load, `discard`,
`unload` and `swap`; it never closes one itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.contracts.ota import OtaRejectedError, Reason, SwapReport
from agent.ota.config import OtaConfig
from agent.ota.host import ModelHost
from agent.ota.priority import lowered_priority
from agent.ota.sandbox import CandidateSpec, TrialRequest, limit_mode, run_trial
from agent.ota.store import ModelRecord
from agent.ota.trial import trial

if TYPE_CHECKING:
    from agent.engines.detector import Detector

log = structlog.get_logger(__name__)

TrialFn = Callable[[Any, list, float], None]  # type: ignore[type-arg]
"""trial(candidate, recent images, latency budget ms): raises OtaRejectedError when the
candidate must not go in (`agent.ota.trial.trial` for detectors)."""


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class SwitchPlan:
    """What happens around the load and the swap of one model."""

    validate: bool
    """Try the model (child trial, then recent frames) before the swap."""
    on_validating: Callable[[], object] = _nothing
    """Called when the trial on recent frames starts (the journal's `validating`)."""
    before_swap: Callable[[], object] = _nothing
    """Called after a successful trial, right before the swap (the pointer write)."""
    restore: ModelRecord | None = None
    """Pause mode: the model to put back when anything fails after the unload."""


@dataclass
class _Slot:
    pause_ms: float = 0.0


class Activator:
    """Loads, tries and swaps models on a `ModelHost` (see the module docstring)."""

    def __init__(
        self,
        cfg: OtaConfig,
        host: ModelHost,
        *,
        workdir: Path,
        candidate: CandidateSpec | None,
        loader_nice: int,
        trial_fn: TrialFn = trial,
    ) -> None:
        if cfg.candidate_check and candidate is None:
            raise ValueError("ota.candidate_check needs the daemon's CandidateSpec")
        self.cfg = cfg
        self.host = host
        self.workdir = workdir
        self.candidate = candidate
        self.loader_nice = loader_nice  # hot swaps load/validate below the loop's priority
        self.trial_fn = trial_fn

    @property
    def pause(self) -> bool:
        return self.cfg.swap_mode == "pause"

    def switch(self, record: ModelRecord, plan: SwitchPlan) -> SwapReport:
        """Bring `record` in (see the module docstring). Raises OtaRejectedError (load or
        validation failed) or TimeoutError (hot swap: no frame boundary in time)."""
        if plan.validate and self.candidate is not None and self.cfg.candidate_check:
            self._child_trial(record)
        with self._slot(plan.restore) as slot:
            t0 = time.monotonic()
            new = self.load(record)
            load_ms = (time.monotonic() - t0) * 1e3
            try:
                if plan.validate:
                    plan.on_validating()
                    self.trial_fn(new, self._recent_images(), self.cfg.latency_budget_ms)
                plan.before_swap()
            except BaseException:
                self.host.discard(new)
                raise
            self.host.swap(new, self.cfg.swap_timeout_s)
        mode = "pause" if self.pause else "hot"
        if self.pause:
            log.info("pause-mode swap", pause_ms=round(slot.pause_ms, 1), load_ms=round(load_ms, 1))
        return SwapReport(mode=mode, pause_ms=round(slot.pause_ms, 3), load_ms=round(load_ms, 3))

    def load(self, record: ModelRecord) -> Detector:
        """Load `record` through the host; load_failed when it cannot."""
        if record.manifest is None:
            raise OtaRejectedError(Reason.LOAD_FAILED, f"{record.path} has no manifest")
        try:
            return self.host.load_detector(Path(record.path), record.manifest)
        except Exception as err:  # EngineError and whatever a broken model makes the runtime raise
            raise OtaRejectedError(Reason.LOAD_FAILED, f"{type(err).__name__}: {err}") from None

    @contextmanager
    def _slot(self, restore: ModelRecord | None) -> Iterator[_Slot]:
        """Hot: a lowered CPU priority. Pause: the loop paused and its model unloaded."""
        slot = _Slot()
        if not self.pause:
            with lowered_priority(self.loader_nice):
                yield slot
            return
        self.host.pause()
        t_pause = time.monotonic()
        try:
            self.host.unload()
            yield slot
        except BaseException:
            if restore is not None:
                self._reinstate(restore)
            raise
        finally:
            self.host.resume()
            slot.pause_ms = (time.monotonic() - t_pause) * 1e3

    def _reinstate(self, record: ModelRecord) -> None:
        """Pause mode: put `record` back after a failure (the loop is still paused)."""
        try:
            self.host.swap(self.load(record), self.cfg.swap_timeout_s)
        except (OtaRejectedError, TimeoutError) as err:
            log.error("could not reload the previous model after a failed swap", error=str(err))

    def _recent_images(self) -> list:  # type: ignore[type-arg]
        frames = self.host.recent_frames(self.cfg.validation_frames)
        if not frames:
            log.warning("no recent frames to validate on; using a blank frame")
        return [f.image for f in frames]

    def _child_trial(self, record: ModelRecord) -> None:
        assert self.candidate is not None
        cfg = self.cfg
        request = TrialRequest(
            model_path=record.path,
            manifest=record.manifest,
            spec=self.candidate,
            latency_budget_ms=cfg.latency_budget_ms,
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_trial(
            request,
            self._recent_images(),
            mode=limit_mode(self.candidate, cfg.candidate_limit),
            memory_mb=cfg.candidate_memory_mb,
            timeout_s=cfg.candidate_timeout_s,
            workdir=self.workdir,
        )
