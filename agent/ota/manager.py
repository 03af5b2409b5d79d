"""The device's OTA manager: commands in, model swapped (or not), state out.

It wires four parts with one job each and owns their threads' lifecycle:

* `CommandIntake` (`intake.py`): payloads from MQTT, checked and answered at once;
* `JobRunner` (`runner.py`): one accepted command at a time - download, verify, install, build;
* `Activator` (`activation.py`): the one load -> trial -> swap path, hot or paused;
* `ProbationWatch` (`probation.py`): health after the swap -> commit or roll back;

with `StateJournal` (`journal.py`) as the single writer of state: every change goes to the
journal (`job.json`) before it is published retained on `edge/<device>/ota/state`, so a restart
resolves an interrupted command to exactly one terminal state (`agent.ota.startup.resolve_startup`).
Detectors belong to the host (the pipeline); the manager asks it to load, swap and discard.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import structlog

from agent.contracts.ota import OtaState
from agent.contracts.topics import Topics
from agent.ota.activation import Activator
from agent.ota.config import OtaConfig
from agent.ota.host import ModelHost, RetainedPublisher
from agent.ota.intake import CommandIntake
from agent.ota.journal import StateJournal
from agent.ota.parts import SlotParts
from agent.ota.runner import BuildHook, JobRunner
from agent.ota.slot import CommandRouter, MessageCallback, ModelSlot
from agent.ota.store import ModelStore
from agent.trust.config import TrustConfig

__all__ = ["BuildHook", "ModelSlot", "OtaManager", "OtaSlots"]

log = structlog.get_logger(__name__)


class OtaManager:
    """Receives signed OTA commands and carries them out against a `ModelHost`."""

    def __init__(
        self,
        cfg: OtaConfig,
        trust: TrustConfig,
        topics: Topics,
        state_dir: Path,
        host: ModelHost,
        publisher: RetainedPublisher,
        *,
        slot: ModelSlot | None = None,
        loader_nice: int = 10,
    ) -> None:
        slot = slot or ModelSlot()
        self.cfg = cfg
        self.kind = slot.kind
        self.topics = topics
        self.publisher = publisher
        self.store = ModelStore(slot.store_dir(Path(state_dir)))
        self._stop = threading.Event()
        self.journal = StateJournal(
            self.store, topics, host, publisher, topics.ota_state_of(slot.kind)
        )
        self.journal.probation_s = cfg.probation_s
        activator = Activator(
            cfg,
            host,
            workdir=self.store.staging_dir,
            candidate=slot.candidate,
            loader_nice=loader_nice,
            trial_fn=slot.trial,
        )
        parts = SlotParts(cfg, host, self.store, self.journal, activator, self._stop)
        self.runner = JobRunner(parts, slot.build)
        self.intake = CommandIntake(self.runner, trust, topics.device, slot)
        self._listening = False

    def listen(self, via: MessageCallback | None = None) -> None:
        """Subscribe to this device's command topic (through `via`, a `CommandRouter`'s
        callback, when several slots share it). Safe before the publisher connects and
        before `start`: commands wait in the inbox until the intake thread runs."""
        if not self._listening:
            self._listening = True
            self.publisher.subscribe(self.topics.ota_command, via or self.intake.on_message)

    def routed(self) -> None:
        """Commands reach this manager through another manager's router: never subscribe."""
        self._listening = True

    def start(self) -> None:
        """Publish the current state (and store damage), resume a probation, take commands."""
        job = self.journal.load()
        damage = self.store.read_damage()
        if job is not None:
            self.journal.publish(job)
            if job.state.terminal:
                self.journal.mark_published(job)
            elif job.state is OtaState.ACTIVE:
                log.info("resuming probation after a restart", command_id=job.command_id)
                self.runner.resume_probation(job)
        in_progress = job is not None and not job.state.terminal
        if damage is not None:
            log.error("OTA store damaged at start", notes=damage.notes)
        if damage is not None and not in_progress:  # a probation's state stays on top
            self.journal.publish_idle("store damaged: " + " | ".join(damage.notes))
        elif job is None:
            self.journal.publish_idle()
        self.intake.start()
        self.listen()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop taking commands; an update in progress ends as failed (interrupted), a
        probation is left to resume at the next start. Records an orderly stop."""
        self._stop.set()
        self.intake.stop()
        deadline = time.monotonic() + timeout
        self.intake.join(max(0.0, deadline - time.monotonic()))
        self.runner.join(max(0.0, deadline - time.monotonic()))
        self.store.mark_clean_stop()

    @property
    def busy(self) -> bool:
        """A command is being carried out (it has not reached its terminal state)."""
        return self.runner.busy

    def handle_payload(self, payload: bytes) -> None:
        """Validate one command payload and answer it (normally on the intake thread)."""
        self.intake.handle_payload(payload)


class OtaSlots:
    """The device's OTA managers, one per model slot (the detector's first), behind one
    subscription to the command topic: a `CommandRouter` hands each command to its kind."""

    def __init__(self, managers: list[OtaManager]) -> None:
        if not managers or managers[0].kind != "detector":
            raise ValueError("the detector's manager comes first")
        self.managers = managers

    def listen(self) -> None:
        first, *others = self.managers
        if not others:
            first.listen()
            return
        router = CommandRouter({m.kind: m.intake.on_message for m in self.managers})
        first.listen(router.on_message)
        for m in others:
            m.routed()

    def start(self) -> None:
        for m in self.managers:
            m.start()

    def stop(self, timeout: float = 2.0) -> None:
        for m in self.managers:
            m.stop(timeout / len(self.managers))

    @property
    def busy(self) -> bool:
        return any(m.busy for m in self.managers)
