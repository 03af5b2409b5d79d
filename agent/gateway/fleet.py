"""The fleet orchestrator: the device list, deploy/abort, and running rollouts.

It joins the pure rollout machine (`agent.gateway.rollout`) and deploy checks
(`agent.gateway.deploy_checks`) to the state file (`agent.gateway.db`, `agent.gateway.devices`)
and to a `publish(topic, payload)` callable (the MQTT side, injected). Device messages go
through `agent.gateway.ingest` (enrolled ids only); OTA states of our commands come back here.
Refusals are `DeployRefused` with a reason; `agent.gateway.api.errors` maps them to HTTP.
Every change is persisted in one transaction *before* the commands it produced are published,
so a `kill -9` at any point resumes: commands that were saved but maybe not delivered are sent
again with the same id and sequence (the device treats a redelivery as the same command).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.ota import (
    OtaState,
    OtaStateMessage,
    canonical_json,
)
from agent.contracts.topics import Topics
from agent.gateway.commands import CommandSigner, command_target
from agent.gateway.db import Store, committed_floors, has_model
from agent.gateway.deploy_checks import DeployRefusal, DeployRefused, check_deploy
from agent.gateway.devices import DeviceBook
from agent.gateway.ingest import DeviceIngest, IngestStats
from agent.gateway.rollback import plan_rollback
from agent.gateway.rollout import (
    CommandKind,
    DeployRequest,
    DeviceSlot,
    DeviceState,
    IllegalTransition,
    Outcome,
    Report,
    Rollout,
    RolloutState,
    Send,
)

log = structlog.get_logger(__name__)

PROGRESS_STATES = frozenset(
    {
        OtaState.IDLE,
        OtaState.DOWNLOADING,
        OtaState.VERIFYING,
        OtaState.BUILDING,
        OtaState.LOADING,
        OtaState.VALIDATING,
        OtaState.ACTIVE,
    }
)

Publish = Callable[[str, bytes], None]

__all__ = ["DeployRefusal", "DeployRefused", "DeployRequest", "Fleet", "outcome_of", "rollout_view"]


WAVE_OPTIONS = ("canary", "wave_size", "max_failures", "timeout_s")
"""The options of a rollout's waves, named alike in requests, forms and `rollout:` defaults."""


def request_with_defaults(
    model: str, version: int, devices: Iterable[str], asked: object, defaults: object
) -> DeployRequest:
    """A DeployRequest with the wave options `asked` sets, and those of `defaults` (the
    gateway's `rollout:` section) where `asked` leaves them None."""
    waves = {}
    for name in WAVE_OPTIONS:
        value = getattr(asked, name)
        waves[name] = getattr(defaults, name) if value is None else value
    return DeployRequest(model=model, version=version, devices=list(devices), **waves)


def registered_kind(store: Store, name: str, version: int) -> str:
    """The registered model's kind (detector when unknown: check_deploy refuses it)."""
    row = store.model(name, version)
    return "detector" if row is None else str(row.manifest.get("kind", "detector"))


def outcome_of(state: OtaState, kind: CommandKind) -> Outcome:
    """What a device's OTA state means for our command of `kind`."""
    if state in PROGRESS_STATES:
        return Outcome.PROGRESS
    if state is OtaState.COMMITTED:
        return Outcome.SUCCEEDED
    if state is OtaState.ROLLED_BACK and kind is CommandKind.ROLLBACK:
        return Outcome.SUCCEEDED
    return Outcome.FAILED  # failed, rejected, or a deploy that rolled back


class Fleet:
    """Devices and rollouts. Thread-safe: MQTT callbacks, the HTTP API and the ticker share it."""

    def __init__(
        self,
        store: Store,
        gateway_key: Ed25519PrivateKey,
        publish: Publish,
        *,
        public_url: str,
        prefix: str = "edge",
        command_ttl_s: float = 900.0,
        resend_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publish = publish
        self.signer = CommandSigner(gateway_key, public_url.rstrip("/"), command_ttl_s)
        self.prefix = prefix
        self.resend_s = resend_s
        self.clock = clock
        self._last_sent: dict[tuple[int, str], float] = {}  # (rollout, device) -> last (re)send
        self._lock = threading.RLock()
        self.active: dict[int, Rollout] = {}
        self.ignored_reports = 0  # OTA states for commands that are not in a running rollout
        self.devices = DeviceBook(store)
        self.ingest = DeviceIngest(
            self.devices, store.command_sent, self._on_ota_state, prefix=prefix, clock=clock
        )
        self.on_enrolled: Callable[[str], None] = lambda device: None  # e.g. re-read retained

    @property
    def stats(self) -> IngestStats:
        """Counters of device messages: malformed, from unknown ids, for unknown commands."""
        return self.ingest.stats

    def is_enrolled(self, device: str) -> bool:
        """True when `device` is on the device list (for the archive and the HTTP side)."""
        return self.devices.is_enrolled(device)

    # -- lifecycle ------------------------------------------------------------------------------

    def load(self) -> int:
        """Load unfinished rollouts from the state file (after a restart)."""
        with self._lock:
            for rid in self.store.rollout_ids(active_only=True):
                r = self.store.load_rollout(rid)
                if r is not None:
                    self.active[rid] = r
                    log.info("rollout resumed", rollout=rid, state=r.state.value, counts=r.counts())
            return len(self.active)

    def resend(self) -> int:
        """Publish again every saved command that has no answer yet (same id and sequence;
        the device treats a redelivery as the same command). Called after each connect."""
        return self._resend(due_only=False)

    def _resend(self, *, due_only: bool) -> int:
        """Re-publish unanswered commands; with `due_only`, those sent `resend_s` ago or more.

        A device that was reconnecting, or had not subscribed yet, when its command went out
        gets it again well before its deadline, instead of timing out.
        """
        n = 0
        with self._lock:
            now = self.clock()
            for r, slot in unanswered(self.active.values()):
                key = (r.id, slot.device)
                last = max(self._last_sent.get(key, 0.0), slot.sent_at or now)
                if due_only and now - last < self.resend_s:
                    continue
                cmd = self.store.stored_command(r.id, slot.device)
                if cmd is not None:
                    self.publish(Topics(slot.device, self.prefix).ota_command, canonical_json(cmd))
                    self._last_sent[key] = now
                    n += 1
        if n:
            log.info("commands re-sent", count=n, reason="unanswered" if due_only else "connect")
        return n

    # -- device messages ------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Handle one message on a status, ota/state or health topic (see `DeviceIngest`)."""
        self.ingest.on_message(topic, payload, retained)

    def enroll(self, device: str, token_digest: str | None) -> None:
        """Put `device` on the device list (EnrolmentError if it is there already)."""
        self.devices.enroll(device, token_digest, self.clock())
        log.info("device enrolled", device=device, token=token_digest is not None)
        self.on_enrolled(device)

    def remove(self, device: str) -> None:
        """Take `device` off the list; refused while it is in a running rollout."""
        with self._lock:
            busy = [r.id for r in self.active.values() if device in r.slots]
            if busy:
                raise DeployRefused(
                    DeployRefusal.BUSY,
                    f"device {device} is in running rollout {busy[0]}; abort it first",
                )
            self.devices.remove(device)
        log.info("device removed", device=device)

    def _on_ota_state(self, device: str, msg: OtaStateMessage) -> None:
        if msg.command_id is None:
            return
        with self._lock:
            self._apply_report(device, msg)

    def _apply_report(self, device: str, msg: OtaStateMessage) -> None:
        assert msg.command_id is not None
        now = self.clock()
        for r in list(self.active.values()):
            slot = r.slots.get(device)
            if slot is None or msg.command_id not in (slot.command_id, slot.revert_command_id):
                continue
            kind = r.action if msg.command_id == slot.command_id else CommandKind.ROLLBACK
            report = Report(
                device,
                msg.command_id,
                outcome_of(msg.state, kind),
                ota_state=msg.state.value,
                reason=None if msg.reason is None else msg.reason.value,
                progress=_fraction(msg),
                detail=msg.detail,
            )
            actions = r.on_report(report, now)
            if actions is None:
                continue
            self._commit(r, actions, now)
            return
        self.ignored_reports += 1

    # -- rollouts -------------------------------------------------------------------------------

    def deploy(self, req: DeployRequest) -> Rollout:
        """Plan and start a rollout, or raise DeployRefused with a reason and a clear message."""
        with self._lock:
            busy = {d: r.id for r in self.active.values() for d in req.devices if d in r.slots}
            target = check_deploy(
                (req.model, req.version),
                req.devices,
                {d: self.devices.get(d) for d in req.devices},
                partial(has_model, self.store),
                busy,
                {d: committed_floors(self.store, d) for d in req.devices},
                kind=registered_kind(self.store, req.model, req.version),
            )
            r = self._start(req, target.previous, target.already)
            log.info("rollout started", rollout=r.id, model=f"{req.model}@{req.version}",
                     devices=len(req.devices), canary=req.canary)  # fmt: skip
            self._retire(r)
            return r

    def rollback(self, rollout_id: int, req: DeployRequest) -> Rollout:
        """Send the devices of finished rollout `rollout_id` back (see agent.gateway.rollback)."""
        with self._lock:
            source = self.rollout(rollout_id)
            if source is None:
                raise DeployRefused(DeployRefusal.NO_SUCH_ROLLOUT, f"no rollout {rollout_id}")
            busy = {d: r.id for r in self.active.values() for d in r.slots}
            rows = {d: self.devices.get(d) for d in source.slots}
            plan = plan_rollback(source, rows, partial(has_model, self.store), busy)
            req = replace(req, model=source.model_name, version=source.model_version)
            r = self._start(replace(req, devices=plan.devices), plan.previous, undoes=rollout_id)
            log.info("rollback started", rollout=r.id, undoes=rollout_id, devices=plan.devices)
            self._retire(r)
            return r

    def _start(
        self,
        req: DeployRequest,
        previous: dict[str, tuple[str, int] | None],
        already: frozenset[str] = frozenset(),
        undoes: int | None = None,
    ) -> Rollout:
        """Plan, save and send the first wave of a checked request, in one transaction."""
        now = self.clock()
        uid = secrets.token_hex(6)
        with self.store.tx() as db:
            rid = self.store.new_rollout_id(db, uid, req.model, req.version, now)
            try:
                kind = CommandKind.DEPLOY if undoes is None else CommandKind.ROLLBACK
                r = Rollout.plan(rid, uid, req, now, action=kind, undoes=undoes)
            except ValueError as err:
                raise DeployRefused(DeployRefusal.BAD_PLAN, str(err)) from None
            for d, prev in previous.items():
                r.slots[d].previous = prev
            sends = self._prepare(r, r.start(now, already), now, db)
        self.active[rid] = r
        self._send(sends)
        return r

    def abort(self, rollout_id: int, reason: str = "aborted by operator") -> Rollout:
        """Abort a running rollout: stop sending, roll back devices that committed."""
        with self._lock:
            r = self.active.get(rollout_id)
            if r is None:
                exists = self.store.load_rollout(rollout_id)
                if exists is None:
                    raise DeployRefused(DeployRefusal.NO_SUCH_ROLLOUT, f"no rollout {rollout_id}")
                raise DeployRefused(
                    DeployRefusal.NOT_RUNNING,
                    f"rollout {rollout_id} is {exists.state.value}; nothing to abort",
                )
            now = self.clock()
            try:
                actions = r.abort(reason, now)
            except IllegalTransition:
                raise DeployRefused(
                    DeployRefusal.NOT_RUNNING,
                    f"rollout {rollout_id} is {r.state.value}; cannot abort",
                ) from None
            self._commit(r, actions, now)
            return r

    def tick(self) -> None:
        """Check deadlines of every running rollout."""
        with self._lock:
            now = self.clock()
            for r in list(self.active.values()):
                actions = r.tick(now)
                if actions or r.dirty or r.terminal:
                    self._commit(r, actions, now)
        self._resend(due_only=True)

    def _commit(self, r: Rollout, actions: list[Send], now: float) -> None:
        with self.store.tx() as db:
            sends = self._prepare(r, actions, now, db)
        self._send(sends)
        self._retire(r)

    def _retire(self, r: Rollout) -> None:
        if r.terminal and r.id in self.active:
            del self.active[r.id]
            for device in r.slots:
                self._last_sent.pop((r.id, device), None)
            log.info(
                "rollout finished",
                rollout=r.id,
                state=r.state.value,
                reason=r.reason,
                devices=r.counts(),
            )

    def _prepare(
        self, r: Rollout, actions: list[Send], now: float, db: Any
    ) -> list[tuple[str, bytes]]:
        """Sign the commands of `actions` (allocating sequences) and save the rollout."""
        commands: dict[str, dict[str, Any]] = {}
        pending = list(actions)
        while pending:
            a = pending.pop(0)
            try:
                cmd = self._build_command(r, a, now, db)
            except DeployRefused as err:
                log.error("cannot send command", rollout=r.id, device=a.device, error=err.message)
                pending += r.fail_send(a.device, err.message, now)
                continue
            commands[a.device] = cmd
        self.store.save_rollout(r, db, commands)
        return [
            (Topics(dev, self.prefix).ota_command, canonical_json(cmd))
            for dev, cmd in commands.items()
        ]

    def _send(self, sends: list[tuple[str, bytes]]) -> None:
        for topic, payload in sends:
            self.publish(topic, payload)

    def _build_command(self, r: Rollout, a: Send, now: float, db: Any) -> dict[str, Any]:
        target = command_target(r, a)
        model = self.store.model(*target)
        if model is None:
            raise DeployRefused(
                DeployRefusal.UNKNOWN_MODEL, f"{target[0]}@{target[1]} is not in the registry"
            )
        seq = self.store.next_seq(a.device, db, self.ingest.reported_sequence.get(a.device, 0) + 1)
        return self.signer.sign(a, model, seq, now)

    # -- views ----------------------------------------------------------------------------------

    def rollout(self, rollout_id: int) -> Rollout | None:
        with self._lock:
            return self.active.get(rollout_id) or self.store.load_rollout(rollout_id)


def unanswered(rollouts: Iterable[Rollout]) -> Iterator[tuple[Rollout, DeviceSlot]]:
    """Devices whose command has no answer yet: a deploy (unless the rollout is rolling back:
    a deploy nobody answered is not pushed again then) or a rollback."""
    for r in rollouts:
        for slot in r.slots.values():
            if (slot.state is DeviceState.SENT and r.state is not RolloutState.ROLLING_BACK) or (
                slot.state is DeviceState.REVERTING and slot.ota_state is None
            ):
                yield r, slot


def _fraction(msg: OtaStateMessage) -> float | None:
    """Download progress 0..1 of a state message, None when it carries none."""
    p = msg.progress
    return p.bytes / p.total if p is not None and p.total else None


def probation_end(slot: DeviceSlot, ota: Mapping[str, Any] | None) -> str | None:
    """When `slot`'s device ends probation for our command (its retained ota/state), or None."""
    if not ota or ota.get("state") != "active":
        return None
    ours = ota.get("command_id") in (slot.command_id, slot.revert_command_id)
    return ota.get("probation_ends") if ours else None


def rollout_view(
    r: Rollout, now: float, ota: Mapping[str, Mapping[str, Any] | None] | None = None
) -> dict[str, Any]:
    """JSON view of a rollout with each device's state and progress; `ota`: each device's last
    ota/state (for the end of probation)."""
    ota = ota or {}
    return {
        "id": r.id,
        "model": r.model_name,
        "version": r.model_version,
        "state": r.state.value,
        "action": r.action.value,
        "undoes": r.undoes,
        "reason": r.reason,
        "wave": r.current_wave,
        "waves": r.last_wave,
        "created": r.created_at,
        "finished": r.finished_at,
        "counts": r.counts(),
        "devices": [
            {
                "device": s.device,
                "wave": s.wave,
                "state": s.state.value,
                "ota_state": s.ota_state,
                "progress": s.progress,
                "reason": s.reason,
                "detail": s.detail,
                "probation_ends": probation_end(s, ota.get(s.device)),
                "previous": None if s.previous is None else f"{s.previous[0]}@{s.previous[1]}",
                "remaining_s": None
                if s.deadline is None
                or s.state not in (DeviceState.SENT, DeviceState.UPDATING, DeviceState.REVERTING)
                else max(0.0, s.deadline - now),
            }
            for s in r.slots.values()
        ],
    }
