"""The current command's state: each change is checked, written to the journal, then published.

`StateJournal` is the one place that moves a command through the state machine
(`agent.ota.machine`): it writes `job.json` before the retained `edge/<device>/ota/state`
goes out, so a restart finds every state the gateway saw. It also answers the states that
belong to no job (idle, a rejection that consumed no sequence number).
"""

from __future__ import annotations

import threading
import time

import structlog

from agent.contracts.manifest import Manifest
from agent.contracts.ota import (
    ModelId,
    OtaAction,
    OtaCommand,
    OtaRejectedError,
    OtaState,
    OtaStateMessage,
    Progress,
    Reason,
    SwapReport,
    format_rfc3339,
    parse_rfc3339,
    state_bytes,
)
from agent.contracts.topics import Topics
from agent.ota.host import ModelHost, RetainedPublisher
from agent.ota.machine import check_transition
from agent.ota.store import Baseline, Job, LedgerUnreadableError, ModelStore

log = structlog.get_logger(__name__)

DETAIL_MAX = 2000
JOB_STATE = frozenset({"command_id", "action", "model", "state", "reason", "detail", "swap", "ts"})
"""The fields of a `Job` its state message carries as they are (same names in both)."""


def now_rfc3339() -> str:
    return format_rfc3339(time.time())


def model_id(m: Manifest) -> ModelId:
    return ModelId(name=m.name, version=m.version, sha256=m.sha256)


class StateJournal:
    """Holds the current job; `advance` moves it (journal first, then MQTT)."""

    def __init__(
        self,
        store: ModelStore,
        topics: Topics,
        host: ModelHost,
        publisher: RetainedPublisher,
        state_topic: str | None = None,
    ) -> None:
        self.store = store
        self.topics = topics
        self.state_topic = state_topic or topics.ota_state  # the slot's retained state topic
        self.device = topics.device
        self.host = host
        self.publisher = publisher
        self.lock = threading.RLock()  # guards journal, ledger and pointer read-modify-write
        self.job: Job | None = None
        self.probation_s: float | None = None  # set by the manager: announced while active

    def load(self) -> Job | None:
        """Read the journal at start (after `agent.ota.startup.resolve_startup` settled it)."""
        with self.lock:
            self.job = self.store.read_job()
        return self.job

    def begin(self, job: Job) -> None:
        """Make `job` current and write it (an accepted or sequence-consuming command)."""
        with self.lock:
            self.store.write_job(job)
            self.job = job

    def advance(
        self,
        state: OtaState,
        *,
        reason: Reason | None = None,
        detail: str | None = None,
        swap: SwapReport | None = None,
        baseline: Baseline | None = None,
    ) -> Job:
        """Check the transition of the current job, write the journal, then publish."""
        with self.lock:
            job = self.job
            assert job is not None, "no command in progress"
            check_transition(job.state, state)
            update: dict[str, object] = {
                "state": state,
                "ts": now_rfc3339(),
                "reason": reason,
                "detail": detail[:DETAIL_MAX] if detail else None,
            }
            if swap is not None:
                update["swap"] = swap
            if baseline is not None:
                update["baseline"] = baseline
            job = job.model_copy(update=update)
            self.store.write_job(job)
            self.job = job
        self.publish(job)
        if state.terminal:
            self.mark_published(job)
        log.info(
            "OTA state",
            command_id=job.command_id,
            state=state.value,
            reason=reason.value if reason else None,
        )
        return job

    def fail(self, reason: Reason, detail: str) -> None:
        """End the current job as failed, unless it already reached a terminal state."""
        with self.lock:
            if self.job is None or self.job.state.terminal:
                return
            self.advance(OtaState.FAILED, reason=reason, detail=detail)

    def mark_published(self, job: Job) -> None:
        with self.lock:
            if self.job is not None and self.job.command_id == job.command_id:
                self.job = self.job.model_copy(update={"published": True})
                self.store.write_job(self.job)

    # -- retained states ----------------------------------------------------------------------
    def publish(self, job: Job, progress: Progress | None = None) -> None:
        """Publish `job`'s state retained (progress: a download in flight)."""
        msg = OtaStateMessage(
            **job.model_dump(include=JOB_STATE),
            device=self.device,
            active_model=self.active_id(),
            progress=progress,
            probation_ends=self.probation_ends(job),
            last_sequence=self.last_sequence(),
        )
        self.publisher.publish_retained(self.state_topic, state_bytes(msg))

    def probation_ends(self, job: Job) -> str | None:
        """When a deploy's probation ends at the earliest (the state's time + probation_s)."""
        if job.state is not OtaState.ACTIVE or job.action is not OtaAction.DEPLOY:
            return None
        if self.probation_s is None:
            return None
        return format_rfc3339(parse_rfc3339(job.ts).timestamp() + self.probation_s)

    def publish_idle(self, detail: str | None = None) -> None:
        """No command yet (or a damaged store, said in `detail`)."""
        msg = OtaStateMessage(
            device=self.device,
            state=OtaState.IDLE,
            active_model=self.active_id(),
            detail=detail[:DETAIL_MAX] if detail else None,
            ts=now_rfc3339(),
            last_sequence=self.last_sequence(),
        )
        self.publisher.publish_retained(self.state_topic, state_bytes(msg))

    def publish_rejection(self, command: OtaCommand | None, err: OtaRejectedError) -> None:
        """A rejection that is not journaled (it consumed no sequence number)."""
        msg = OtaStateMessage(
            device=self.device,
            state=OtaState.REJECTED,
            command_id=command.command_id if command else None,
            action=command.action if command else None,
            model=model_id(command.manifest.manifest) if command else None,
            active_model=self.active_id(),
            reason=err.reason,
            detail=err.detail[:DETAIL_MAX],
            ts=now_rfc3339(),
            last_sequence=self.last_sequence(),
        )
        self.publisher.publish_retained(self.state_topic, state_bytes(msg))

    def last_sequence(self) -> int | None:
        """Highest command sequence accepted (the ledger), so a gateway restored from an old
        backup numbers its next command above it; None when the ledger cannot be read."""
        try:
            return self.store.read_ledger().last_sequence
        except LedgerUnreadableError:
            return None

    def active_id(self) -> ModelId | None:
        try:
            info = self.host.active_detector().info
        except Exception:  # the host may be between models; the state still goes out
            return None
        return ModelId(name=info.name, version=info.version, sha256=info.sha256)
