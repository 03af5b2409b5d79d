"""Live reload of the running daemon: SIGHUP (`systemctl reload edge-agent`) or a config push.

The signal handler only calls `request()`; the daemon's main thread calls `tick()` every
supervision turn, which re-reads the config file (with pushed cameras, `agent.camera_overlay`),
sorts the differences (`agent.reload.plan_reload`) and applies what can change live: camera
readers stop, start or restart; thresholds and per-camera settings reach the inference loop
through the `LiveConfigBox` at its next frame. Paths that need a restart are named in one log
line and in `status.restart_required`; their running values stay. An invalid file changes
nothing: the problems are logged by field path, as `edge-agent check-config` prints them.

A camera's detection seq lives in the pipeline, keyed by camera id, so a camera removed and
added again within one boot continues its stream (BRIEF section 5).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from agent.config import AgentConfig, ConfigError, load_config, with_cameras
from agent.live import LiveConfig, LiveConfigBox
from agent.reload import ReloadPlan, config_sha256, effective_config, plan_reload
from agent.sources.reader import CameraReader, ReaderGroup
from agent.util.validation import validation_problems

log = structlog.get_logger(__name__)

READER_STOP_TIMEOUT_S = 2.0


class ReloadHost(Protocol):
    """The daemon as the reloader sees it."""

    cfg: AgentConfig
    readers: dict[str, Any]

    def push_status(self) -> None: ...


@dataclass(frozen=True)
class ReloadOutcome:
    """How one reload went: applied (with the running config's sha256) or refused (problems)."""

    applied: bool
    config_sha256: str
    problems: tuple[str, ...] = ()
    plan: ReloadPlan | None = None


class Reloader:
    """Applies config reloads on the main thread; see the module docstring."""

    def __init__(
        self, host: ReloadHost, config_path: Path | None, group: ReaderGroup, box: LiveConfigBox
    ) -> None:
        self._host = host
        self._path = config_path
        self._group = group
        self._box = box
        self._requested = threading.Event()
        self.config_sha256 = config_sha256(host.cfg)
        self.restart_required: tuple[str, ...] = ()

    def request(self) -> None:
        """Ask for a reload at the next `tick` (safe in a signal handler)."""
        self._requested.set()

    def tick(self) -> None:
        """Reload if one was requested (main thread)."""
        if self._requested.is_set():
            self._requested.clear()
            self.reload("signal")

    def reload(self, trigger: str) -> ReloadOutcome:
        """Re-read the config file and apply it."""
        if self._path is None:
            log.error("config reload refused: the daemon was not started from a config file")
            return ReloadOutcome(False, self.config_sha256, ("no config file",))
        try:
            new = load_config(self._path)
        except ConfigError as err:
            return self._refused(trigger, err.path, err.problems)
        return self.apply(new, trigger)

    def check_cameras(self, cameras: object) -> tuple[str, ...]:
        """Problems of the config file with `cameras` in place of its cameras (none: valid)."""
        if self._path is None:
            return ("the daemon was not started from a config file",)
        try:
            with_cameras(load_config(self._path, pushed=False), cameras, self._path)
        except ConfigError as err:
            return tuple(err.problems)
        return ()

    def apply(self, new: AgentConfig, trigger: str) -> ReloadOutcome:
        """Apply `new` (valid) over the running config."""
        old = self._host.cfg
        plan = plan_reload(old, new)
        try:
            running = effective_config(old, new, plan)
        except ValidationError as err:  # a live value that only fits a restart-only one
            return self._refused(trigger, self._path, validation_problems(err))
        self._apply_cameras(plan, running)
        self._host.cfg = running
        self.config_sha256 = config_sha256(running)
        self.restart_required = plan.restart_required
        self._host.push_status()  # before the loop sees the config: new zones' zeros go first
        self._box.set(LiveConfig.of(running))
        if plan.restart_required:
            log.warning(
                "config changes need a restart; the running values stay in force",
                paths=list(plan.restart_required),
            )
        log.info(
            "config reloaded", trigger=trigger, config_sha256=self.config_sha256, **plan.summary()
        )
        return ReloadOutcome(True, self.config_sha256, plan=plan)

    def _refused(self, trigger: str, path: Path | None, problems: list[str]) -> ReloadOutcome:
        log.error(
            "config reload refused: invalid config; nothing changed",
            trigger=trigger,
            path=str(path),
            problems=problems,
        )
        return ReloadOutcome(False, self.config_sha256, tuple(problems))

    def _apply_cameras(self, plan: ReloadPlan, running: AgentConfig) -> None:
        """Stop removed and restarted readers, start restarted and added ones."""
        group = self._group
        for cam_id in (*plan.removed, *(c.id for c in plan.restarted)):
            if not group.remove(cam_id, READER_STOP_TIMEOUT_S):
                log.warning("camera reader did not stop in time; left behind", camera=cam_id)
        for cam in (*plan.restarted, *plan.added):
            group.add(CameraReader(cam, group.signal))
        order = [c.id for c in running.cameras]
        by_id = {r.camera_id: r for r in group.readers}
        self._host.readers = {i: by_id[i] for i in order if i in by_id}
