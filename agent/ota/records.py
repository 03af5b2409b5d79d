"""The OTA store's records and the pure start-up decisions on them.

`settle` resolves an interrupted command at start; `count_start` tracks how often the daemon
died on a committed model and decides a crash-loop rollback. Neither touches disk: the
`ModelStore` (`agent/ota/store.py`) reads the files, calls these and writes the result.
"""

from __future__ import annotations

from pydantic import Field

from agent.contracts.manifest import Manifest
from agent.contracts.ota import ModelId, OtaAction, OtaState, Reason, SwapReport
from agent.util.models import FrozenModel


class ModelRecord(FrozenModel):
    """A model the device can run."""

    name: str
    """Model name."""
    version: int = Field(ge=0)
    """Model version."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the artifact."""
    path: str
    """Absolute path of the artifact."""
    manifest: Manifest | None = None
    """Its manifest, if it has one."""

    def model_id(self) -> ModelId:
        return ModelId(name=self.name, version=self.version, sha256=self.sha256)


class Probation(FrozenModel):
    """The active model was swapped in by `command_id` and is not committed yet."""

    command_id: str
    """Command that swapped it in."""
    boots: int = Field(0, ge=0)
    """Daemon starts since the swap."""
    max_boots: int = Field(ge=1)
    """Starts at which the next start rolls back."""


class Pointer(FrozenModel):
    """Which model runs, which is kept for rollback."""

    active: ModelRecord | None = None
    """Model to load at start; None: default."""
    previous: ModelRecord | None = None
    """Model kept for rollback."""
    probation: Probation | None = None
    """Set while the active one is on probation."""
    default: ModelRecord | None = None
    """The configured model (model.path), recorded at each start."""

    def running(self) -> ModelRecord | None:
        """The model that runs: the active one, else the configured default."""
        return self.active or self.default


class Baseline(FrozenModel):
    """The old model's health just before a swap, for the probation detection-rate check."""

    frames: int = Field(ge=0)
    """Frames in the baseline window."""
    detections_per_frame: float | None = None
    """Mean detections per frame."""


class Job(FrozenModel):
    """The latest command and where it is (journal, rewritten at every state change)."""

    command_id: str
    """Command id."""
    digest: str
    """command_digest of the command."""
    action: OtaAction
    """deploy or rollback."""
    model: ModelId
    """Target model."""
    manifest: Manifest | None = None
    """Target manifest (None only for a crash-loop rollback to a model that has none, e.g. the
    configured one)."""
    state: OtaState
    """Current state."""
    reason: Reason | None = None
    """Reason of a failed/rolled back/rejected end."""
    detail: str | None = None
    """Human-readable explanation."""
    swap: SwapReport | None = None
    """Swap measurements."""
    baseline: Baseline | None = None
    """Old model's health before the swap."""
    ts: str
    """When the state was entered (UTC RFC 3339)."""
    published: bool = False
    """The terminal state was handed to MQTT."""


def settle(pointer: Pointer, job: Job | None, now: str) -> tuple[Pointer, Job | None]:
    """Pure start-up resolution of the pointer and the journal (see docs/ota.md).

    * the active model is on probation for the journal's command: count this start; at
      `max_boots` starts roll back (rolled_back: crash_loop), else stay active;
    * the journal says active but probation is over: committed if the pointer runs its model,
      else rolled_back (interrupted);
    * any other unfinished state: failed (interrupted), pointer untouched;
    * a terminal journal with a stale probation record: finish what the journal says.
    """
    prob = pointer.probation
    if job is None:
        if prob is not None:  # no journal to go with it: treat as committed
            pointer = pointer.model_copy(update={"probation": None})
        return pointer, None
    on_probation = prob is not None and prob.command_id == job.command_id
    if job.state.terminal:
        if on_probation:
            if job.state is OtaState.COMMITTED:
                pointer = pointer.model_copy(update={"probation": None})
            else:
                pointer = reverted(pointer)
        elif prob is not None:
            pointer = pointer.model_copy(update={"probation": None})
        return pointer, job
    if on_probation and prob is not None:
        boots = prob.boots + 1
        if boots >= prob.max_boots:
            pointer = reverted(pointer)
            job = _end(
                job,
                OtaState.ROLLED_BACK,
                Reason.CRASH_LOOP,
                f"{boots} starts on probation without a commit",
                now,
            )
            return pointer, job
        pointer = pointer.model_copy(update={"probation": prob.model_copy(update={"boots": boots})})
        return pointer, job.model_copy(update={"state": OtaState.ACTIVE})
    if prob is not None:
        pointer = pointer.model_copy(update={"probation": None})
    if job.state is OtaState.ACTIVE:
        runs_new = pointer.active is not None and pointer.active.sha256 == job.model.sha256
        if runs_new:
            return pointer, _end(job, OtaState.COMMITTED, None, None, now)
        return pointer, _end(
            job,
            OtaState.ROLLED_BACK,
            Reason.INTERRUPTED,
            "stopped during probation; the previous model runs",
            now,
        )
    return pointer, _end(
        job, OtaState.FAILED, Reason.INTERRUPTED, f"the daemon stopped while {job.state.value}", now
    )


def reverted(pointer: Pointer) -> Pointer:
    """The pointer after going back to the previous model (no probation, nothing kept)."""
    if pointer.previous is None:
        return pointer.model_copy(update={"probation": None})
    return Pointer(active=pointer.previous, previous=None, probation=None, default=pointer.default)


def _end(job: Job, state: OtaState, reason: Reason | None, detail: str | None, now: str) -> Job:
    return job.model_copy(
        update={"state": state, "reason": reason, "detail": detail, "ts": now, "published": False}
    )


class Runs(FrozenModel):
    """Daemon runs on the committed model (`runs.json`): a run that never reached a clean stop
    is a crash of that model."""

    sha256: str | None = None
    """The model these runs were on."""
    started: float | None = None
    """Unix time the current run started; None after a clean stop."""
    crashes: list[float] = Field(default_factory=list)
    """Start times of runs on it that ended in a crash."""


def count_start(
    runs: Runs, pointer: Pointer, now: float, limit: int, window_s: float
) -> tuple[Runs, int]:
    """Record this start; return the new runs record and the crashes that call for a rollback
    (0: no rollback) (pure).

    A previous run with no clean stop is a crash of the model the (settled) pointer runs now:
    the one that ran last, even when it was committed during that run. With `limit`
    crashes within `window_s` seconds and a previous model kept, the model is rolled back
    (once: the pointer keeps no previous model after it). Runs on probation are not counted
    here (`settle` has its own limit for them).
    """
    running = pointer.running()
    sha = running.sha256 if running is not None else None
    crashes = list(runs.crashes) if runs.sha256 == sha else []
    if runs.started is not None:  # it crashed on what it ran last: what the pointer runs now
        crashes.append(runs.started)
    crashes = [t for t in crashes if now - t <= window_s]
    if pointer.probation is not None:
        crashes = []
    roll_back = (
        len(crashes) >= limit and pointer.active is not None and pointer.previous is not None
    )
    if roll_back:
        sha = pointer.previous.sha256 if pointer.previous is not None else None
        return Runs(sha256=sha, started=now, crashes=[]), len(crashes)
    return Runs(sha256=sha, started=now, crashes=crashes), 0


def crash_loop_job(pointer: Pointer, crashes: int, window_s: float, now: str, stamp: int) -> Job:
    """The journal entry of a crash-loop rollback from the committed model to the previous."""
    active, previous = pointer.active, pointer.previous
    assert active is not None and previous is not None
    return Job(
        command_id=f"crash-loop-{stamp}",
        digest="",
        action=OtaAction.ROLLBACK,
        model=previous.model_id(),
        manifest=previous.manifest,
        state=OtaState.ROLLED_BACK,
        reason=Reason.CRASH_LOOP,
        detail=f"{active.name} v{active.version} crashed the daemon {crashes} times within "
        f"{window_s:g} s after its commit; running {previous.name} v{previous.version} again",
        ts=now,
    )
