"""Command intake: payloads in from MQTT, each checked and answered at once.

paho's network thread only queues payloads (`on_message`, bounded, never blocks). The intake
thread validates each command in the protocol's order (`agent.ota.validate`), consumes its
sequence number in the ledger and hands an accepted command to the `JobRunner`; rejections,
`busy` and redeliveries are answered right away. A ledger that cannot be read refuses every
command (`ledger_unreadable`) until an operator clears it: the device never guesses a sequence.
"""

from __future__ import annotations

import queue
import threading

import structlog

from agent.contracts.manifest import DEFAULT_KIND, Manifest, ModelKind
from agent.contracts.ota import (
    OtaCommand,
    OtaRejectedError,
    OtaState,
    Reason,
    command_digest,
    parse_command,
)
from agent.ota.journal import model_id, now_rfc3339
from agent.ota.runner import JobRunner
from agent.ota.slot import ModelSlot
from agent.ota.store import Job, LedgerUnreadableError, ModelRecord
from agent.ota.validate import SEQUENCE_CONSUMING, Delivery, ModelView, validate_command
from agent.trust.config import TrustConfig
from agent.trust.signing import trusted_key_map

log = structlog.get_logger(__name__)

_STOP = object()


def _triple(record: ModelRecord | None) -> tuple[str, int, str] | None:
    return None if record is None else (record.name, record.version, record.sha256)


class CommandIntake:
    """Validates and answers commands on its own thread; starts accepted ones."""

    def __init__(self, runner: JobRunner, trust: TrustConfig, device: str, slot: ModelSlot) -> None:
        self.runner = runner
        self.parts = runner.parts
        self.device = device
        self.slot = slot  # the model slot this intake serves: its kind, the formats it runs
        self._gateway_keys = trusted_key_map(trust.gateway_keys)
        self._release_keys = trusted_key_map(trust.release_keys)
        self._allowed_models = frozenset(trust.allowed_models)
        self._inbox: queue.Queue[object] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def on_message(self, topic: str, payload: bytes) -> None:
        """Network-thread callback: queue the payload, never block."""
        try:
            self._inbox.put_nowait(bytes(payload))
        except queue.Full:
            log.error("OTA command queue full; command dropped", topic=topic, size=len(payload))

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="ota-intake", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._inbox.put_nowait(_STOP)
        except queue.Full:
            pass

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _loop(self) -> None:
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
            command = parse_command(payload, self.parts.cfg.max_command_bytes)
            with self.parts.journal.lock:
                self._accept(command)
        except OtaRejectedError as err:
            self._reject(command, err, payload)

    def _accept(self, command: OtaCommand) -> None:
        """Check `command` against the ledger and the models; start it or answer a redelivery."""
        try:
            ledger = self.parts.store.read_ledger()
        except LedgerUnreadableError as err:
            raise OtaRejectedError(Reason.LEDGER_UNREADABLE, str(err)) from None
        pointer = self.parts.store.read_pointer()
        verdict = validate_command(
            command,
            device=self.device,
            gateway_keys=self._gateway_keys,
            release_keys=self._release_keys,
            ledger=ledger,
            models=_model_view(pointer.running(), pointer.previous, self.slot.kind),
            busy=self.runner.busy,
            runnable_formats=self.slot.runnable_formats,
            max_artifact_bytes=self.parts.cfg.max_artifact_bytes,
            platform=self.slot.platform,
            allowed_models=self._allowed_models,
            runnable_kinds=frozenset({self.slot.kind}),
        )
        if verdict.delivery is Delivery.DUPLICATE:
            log.info(
                "command delivered again; re-publishing its state", command_id=command.command_id
            )
            job = self.parts.journal.job
            if job is not None and job.command_id == command.command_id:
                self.parts.journal.publish(job)
            return
        self.parts.store.write_ledger(ledger.record(command))
        assert verdict.manifest is not None
        self.parts.journal.begin(_job(command, OtaState.IDLE, verdict.manifest))
        self.runner.start(command)

    def _reject(self, command: OtaCommand | None, err: OtaRejectedError, payload: bytes) -> None:
        log.warning(
            "OTA command rejected",
            reason=err.reason.value,
            detail=err.detail,
            command_id=command.command_id if command else None,
            size=len(payload),
        )
        if command is not None and err.reason in SEQUENCE_CONSUMING:
            with self.parts.journal.lock:
                self.parts.store.write_ledger(self.parts.store.read_ledger().record(command))
                job = _job(command, OtaState.REJECTED, command.manifest.manifest)
                job = job.model_copy(
                    update={"reason": err.reason, "detail": err.detail[:2000], "published": True}
                )
                self.parts.journal.begin(job)
            self.parts.journal.publish(job)
            return
        self.parts.journal.publish_rejection(command, err)
        current = self.parts.journal.job
        if self.runner.busy and current is not None:
            # the retained state goes back to the command in progress
            self.parts.journal.publish(current)


def _job(command: OtaCommand, state: OtaState, manifest: Manifest) -> Job:
    return Job(
        command_id=command.command_id,
        digest=command_digest(command),
        action=command.action,
        model=model_id(manifest),
        manifest=manifest,
        state=state,
        ts=now_rfc3339(),
    )


def _model_view(
    running: ModelRecord | None, previous: ModelRecord | None, kind: ModelKind = DEFAULT_KIND
) -> ModelView:
    """What validation needs of the models on disk: triples, and the running generation/kind."""
    manifest = None if running is None else running.manifest
    return ModelView(
        active=_triple(running),
        previous=_triple(previous),
        active_generation=None if running is None or manifest is None else manifest.generation,
        active_kind=kind if manifest is None else manifest.kind,
    )
