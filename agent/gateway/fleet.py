"""The fleet orchestrator: device tracking, deploy/abort, and running rollouts.

It joins the pure rollout machine (`agent.gateway.rollout`) to the state file
(`agent.gateway.db`) and to a `publish(topic, payload)` callable (the MQTT side, injected).
Every change is persisted in one transaction *before* the commands it produced are published,
so a `kill -9` at any point resumes: commands that were saved but maybe not delivered are sent
again with the same id and sequence (the device treats a redelivery as the same command).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from agent.contracts.ids import check_id
from agent.gateway.db import Store
from agent.gateway.rollout import (
    CommandKind,
    DeviceState,
    IllegalTransition,
    Outcome,
    Rollout,
    RolloutState,
    Send,
)
from agent.messages.payloads import HealthMessage, StatusMessage
from agent.messages.topics import Topics
from agent.ota.protocol import (
    OtaAction,
    OtaCommand,
    OtaState,
    OtaStateMessage,
    SignedManifest,
    canonical_json,
    format_rfc3339,
    parse_rfc3339,
)
from agent.ota.signing import sign_command

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


class DeployRefused(Exception):
    """A deploy or abort request that cannot be carried out; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class DeployRequest:
    """What `edge-gateway deploy` asks for."""

    model: str
    version: int
    devices: list[str]
    canary: int
    wave_size: int
    max_failures: int
    timeout_s: float


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
        self.gateway_key = gateway_key
        self.publish = publish
        self.public_url = public_url.rstrip("/")
        self.prefix = prefix
        self.command_ttl_s = command_ttl_s
        self.resend_s = resend_s
        self.clock = clock
        self._last_sent: dict[tuple[int, str], float] = {}  # (rollout, device) -> last (re)send
        self._lock = threading.RLock()
        self.active: dict[int, Rollout] = {}
        self.malformed = 0  # malformed device messages since start (also counted per device)
        self.ignored_reports = 0  # OTA states for commands that are not in a running rollout

    # -- lifecycle ------------------------------------------------------------------------------

    def load(self) -> int:
        """Load unfinished rollouts from the state file (after a restart)."""
        with self._lock:
            for rid in self.store.rollout_ids(active_only=True):
                r = self.store.load_rollout(rid)
                if r is not None:
                    self.active[rid] = r
                    log.info(
                        "rollout resumed", rollout=rid, state=r.state.value, devices=r.counts()
                    )
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
            for r in self.active.values():
                for slot in r.slots.values():
                    # A deploy nobody answered is not pushed again once the rollout rolls back.
                    unanswered = (
                        slot.state is DeviceState.SENT and r.state is not RolloutState.ROLLING_BACK
                    ) or (slot.state is DeviceState.REVERTING and slot.ota_state is None)
                    if not unanswered:
                        continue
                    key = (r.id, slot.device)
                    last = max(self._last_sent.get(key, 0.0), slot.sent_at or now)
                    if due_only and now - last < self.resend_s:
                        continue
                    cmd = self.store.stored_command(r.id, slot.device)
                    if cmd is not None:
                        self.publish(
                            Topics(slot.device, self.prefix).ota_command, canonical_json(cmd)
                        )
                        self._last_sent[key] = now
                        n += 1
        if n:
            log.info("commands re-sent", count=n, reason="unanswered" if due_only else "connect")
        return n

    # -- device messages ------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Handle one message on a status, ota/state or health topic. Malformed ones are
        logged, counted (per device and in total) and otherwise ignored."""
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != self.prefix:
            return
        device = parts[1]
        kind = "/".join(parts[2:])
        try:
            check_id(device, "device id")
        except ValueError:
            self._malformed(None, topic, "invalid device id in topic")
            return
        if not payload:
            return  # a cleared retained message
        now = self.clock()
        try:
            if kind == "status":
                status = StatusMessage.model_validate_json(payload)
                self._check_device(status.device, device)
                seen = _ts(status.ts, now) if retained else now
                with self._lock:
                    self.store.upsert_device(
                        device,
                        seen,
                        online=status.state == "online",
                        status=status.model_dump(mode="json", by_alias=True),
                    )
            elif kind == "health":
                health = HealthMessage.model_validate_json(payload)
                self._check_device(health.device, device)
                with self._lock:
                    self.store.upsert_device(
                        device, now, health=health.model_dump(mode="json", by_alias=True)
                    )
            elif kind == "ota/state":
                state = OtaStateMessage.model_validate_json(payload)
                self._check_device(state.device, device)
                seen = _ts(state.ts, now) if retained else now
                with self._lock:
                    self.store.upsert_device(
                        device, seen, ota=state.model_dump(mode="json", by_alias=True)
                    )
                    self._on_ota_state(device, state)
            else:
                return
        except (ValidationError, ValueError) as err:
            self._malformed(device, topic, str(err).splitlines()[0][:200])

    @staticmethod
    def _check_device(payload_device: str, topic_device: str) -> None:
        if payload_device != topic_device:
            raise ValueError(f"payload device {payload_device!r} != topic device {topic_device!r}")

    def _malformed(self, device: str | None, topic: str, why: str) -> None:
        with self._lock:
            self.malformed += 1
            if device is not None:
                self.store.count_malformed(device, self.clock())
        log.warning("malformed device message ignored", topic=topic, error=why)

    def _on_ota_state(self, device: str, msg: OtaStateMessage) -> None:
        if msg.command_id is None:
            return
        now = self.clock()
        for r in list(self.active.values()):
            slot = r.slots.get(device)
            if slot is None or msg.command_id not in (slot.command_id, slot.revert_command_id):
                continue
            kind = CommandKind.DEPLOY if msg.command_id == slot.command_id else CommandKind.ROLLBACK
            progress = (
                msg.progress.bytes / msg.progress.total
                if msg.progress is not None and msg.progress.total
                else None
            )
            actions = r.on_report(
                device,
                msg.command_id,
                outcome_of(msg.state, kind),
                now,
                ota_state=msg.state.value,
                reason=None if msg.reason is None else msg.reason.value,
                progress=progress,
            )
            if actions is None:
                continue
            self._commit(r, actions, now)
            return
        self.ignored_reports += 1

    # -- rollouts -------------------------------------------------------------------------------

    def deploy(self, req: DeployRequest) -> Rollout:
        """Plan and start a rollout, or raise DeployRefused with a clear message."""
        with self._lock:
            now = self.clock()
            if not req.devices:
                raise DeployRefused(400, "no devices given")
            dupes = sorted({d for d in req.devices if req.devices.count(d) > 1})
            if dupes:
                raise DeployRefused(400, f"devices listed twice: {', '.join(dupes)}")
            if self.store.model(req.model, req.version) is None:
                raise DeployRefused(
                    404,
                    f"model {req.model}@{req.version} is not in the registry "
                    "(edge-gateway models list)",
                )
            rows = {d: self.store.device(d) for d in req.devices}
            unknown = sorted(d for d, row in rows.items() if row is None or row.status is None)
            if unknown:
                raise DeployRefused(
                    404, f"unknown device(s): {', '.join(unknown)} (never reported a status)"
                )
            offline = sorted(d for d, row in rows.items() if row is not None and not row.online)
            if offline:
                raise DeployRefused(
                    409,
                    f"device(s) offline: {', '.join(offline)}; they would only time out "
                    "(bring them back or leave them out)",
                )
            busy = {d: r.id for r in self.active.values() for d in req.devices if d in r.slots}
            if busy:
                listing = ", ".join(f"{d} (rollout {rid})" for d, rid in sorted(busy.items()))
                raise DeployRefused(
                    409,
                    f"refused: device(s) already in a running rollout: {listing}; wait for it to "
                    f"finish or abort it (edge-gateway abort ID)",
                )
            previous: dict[str, tuple[str, int] | None] = {}
            already: set[str] = set()
            for d, row in rows.items():
                model = (row.status or {}).get("model") if row else None
                if model is None:
                    raise DeployRefused(409, f"device {d} has not reported its model yet")
                prev = (str(model["name"]), int(model["version"]))
                if prev == (req.model, req.version):
                    already.add(d)
                    previous[d] = None
                    continue
                if self.store.model(*prev) is None:
                    raise DeployRefused(
                        409,
                        f"device {d} runs {prev[0]}@{prev[1]}, which is not in the registry, "
                        "so it could not be rolled back; register it first (edge-gateway "
                        f"models add FILE --name {prev[0]} --version {prev[1]})",
                    )
                previous[d] = prev
            uid = secrets.token_hex(6)
            with self.store.tx() as db:
                rid = self.store.new_rollout_id(db, uid, req.model, req.version, now)
                try:
                    r = Rollout.plan(
                        id=rid,
                        uid=uid,
                        model_name=req.model,
                        model_version=req.version,
                        devices=req.devices,
                        canary=req.canary,
                        wave_size=req.wave_size,
                        max_failures=req.max_failures,
                        timeout_s=req.timeout_s,
                        now=now,
                    )
                except ValueError as err:
                    raise DeployRefused(400, str(err)) from None
                for d, prev in previous.items():
                    r.slots[d].previous = prev
                actions = r.start(now, frozenset(already))
                sends = self._prepare(r, actions, now, db)
            self.active[rid] = r
            self._send(sends)
            log.info(
                "rollout started",
                rollout=rid,
                model=req.model,
                version=req.version,
                devices=len(req.devices),
                canary=req.canary,
            )
            self._retire(r)
            return r

    def abort(self, rollout_id: int, reason: str = "aborted by operator") -> Rollout:
        with self._lock:
            r = self.active.get(rollout_id)
            if r is None:
                exists = self.store.load_rollout(rollout_id)
                if exists is None:
                    raise DeployRefused(404, f"no rollout {rollout_id}")
                raise DeployRefused(
                    409, f"rollout {rollout_id} is {exists.state.value}; nothing to abort"
                )
            now = self.clock()
            try:
                actions = r.abort(reason, now)
            except IllegalTransition as err:
                raise DeployRefused(409, str(err)) from None
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
        if a.kind is CommandKind.DEPLOY:
            target = (r.model_name, r.model_version)
        else:
            prev = r.slots[a.device].previous
            if prev is None:
                raise DeployRefused(409, "previous model unknown; cannot roll back")
            target = prev
        model = self.store.model(*target)
        if model is None:
            raise DeployRefused(409, f"{target[0]}@{target[1]} is not in the registry")
        seq = self.store.next_seq(a.device, db, self._reported_sequence(a.device) + 1)
        command = OtaCommand(
            command_id=a.command_id,
            device=a.device,
            action=OtaAction.DEPLOY if a.kind is CommandKind.DEPLOY else OtaAction.ROLLBACK,
            manifest=SignedManifest.model_validate(model.signed),
            artifact_url=f"{self.public_url}/v1/artifacts/{model.sha256}",
            sequence=seq,
            issued=format_rfc3339(now),
            expires=format_rfc3339(now + self.command_ttl_s),
        )
        signed = sign_command(command, self.gateway_key)
        return signed.model_dump(mode="json", by_alias=True)

    def _reported_sequence(self, device: str) -> int:
        """The last sequence the device says it accepted (its retained ota/state), or 0."""
        row = self.store.device(device)
        reported = None if row is None or row.ota is None else row.ota.get("last_sequence")
        return reported if isinstance(reported, int) and reported >= 0 else 0

    # -- views ----------------------------------------------------------------------------------

    def rollout(self, rollout_id: int) -> Rollout | None:
        with self._lock:
            return self.active.get(rollout_id) or self.store.load_rollout(rollout_id)


def _ts(value: str, default: float) -> float:
    try:
        return parse_rfc3339(value).timestamp()
    except ValueError:
        return default


def rollout_view(r: Rollout, now: float) -> dict[str, Any]:
    """JSON view of a rollout with each device's state and progress."""
    return {
        "id": r.id,
        "model": r.model_name,
        "version": r.model_version,
        "state": r.state.value,
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
                "previous": None if s.previous is None else f"{s.previous[0]}@{s.previous[1]}",
                "remaining_s": None
                if s.deadline is None
                or s.state not in (DeviceState.SENT, DeviceState.UPDATING, DeviceState.REVERTING)
                else max(0.0, s.deadline - now),
            }
            for s in r.slots.values()
        ],
    }
