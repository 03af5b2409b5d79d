"""The rollout state machine: canary first, then waves, abort and revert on failures.

Pure logic: no clock, no network, no database. Every method takes `now` (epoch seconds) and
returns the commands to send as `Send` actions; the orchestrator signs, persists and publishes
them. Tests drive it with literal events and a frozen clock.

Policy (documented in docs/gateway.md):
- The canary devices (wave 0) are sent the deploy command first. Any canary failure (device
  reports `failed`/`rolled_back`, or no terminal state before its deadline) aborts the rollout.
- When every canary device has committed, the other devices follow in waves of `wave_size`;
  a wave starts when every device of the previous one is terminal.
- Outside the canary, the rollout aborts when `max_failures` devices have failed or timed out.
- Aborting skips devices not yet sent, and sends a signed `rollback` to every device that had
  committed the new model (also to devices still updating, as soon as they commit). The rollout
  ends `aborted` when no device is in flight any more.
- A rollback rollout (`action` rollback, `edge-gateway rollback ID`) sends each device of a
  finished rollout the signed `rollback` to the model it ran before (`slot.previous`), canary
  first and in waves like a deploy; aborting it only stops sending (there is nothing to revert
  to: the device keeps no model beyond the one it went back to).
- Every device has a deadline (`timeout_s` after its command), so nothing stays in progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from agent.util.transitions import IllegalTransitionError, check_transition, transition_table

IllegalTransition = IllegalTransitionError
"""A state change that the machine does not allow was attempted (`agent.util.transitions`)."""


class RolloutState(str, Enum):
    """Where a rollout is."""

    CANARY = "canary"
    WAVES = "waves"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    ABORTED = "aborted"


_R = RolloutState
ROLLOUT_TERMINAL = frozenset({_R.SUCCEEDED, _R.ABORTED})
ROLLOUT_TRANSITIONS: dict[RolloutState, frozenset[RolloutState]] = transition_table(
    {
        _R.CANARY: {_R.WAVES, _R.ROLLING_BACK, _R.SUCCEEDED},
        _R.WAVES: {_R.SUCCEEDED, _R.ROLLING_BACK},
        _R.ROLLING_BACK: {_R.ABORTED},
    },
    terminal=ROLLOUT_TERMINAL,
)


class DeviceState(str, Enum):
    """Where one device of a rollout is."""

    PENDING = "pending"  # waiting for its wave
    ALREADY = "already"  # already ran the target version when the rollout started; left alone
    SENT = "sent"  # deploy command published, no report for it yet
    UPDATING = "updating"  # the device reports a non-terminal OTA state for our command
    COMMITTED = "committed"  # the device committed the new model after probation
    FAILED = "failed"  # the device reported failed or rolled_back (its old model kept)
    TIMED_OUT = "timed_out"  # no terminal state before the deadline
    SKIPPED = "skipped"  # never sent: the rollout aborted first
    REVERTING = "reverting"  # rollback command published after an abort
    REVERTED = "reverted"  # the device is back on its previous model
    REVERT_FAILED = "revert_failed"  # the rollback failed or timed out


_D = DeviceState
DEVICE_TRANSITIONS: dict[DeviceState, frozenset[DeviceState]] = transition_table(
    {
        _D.PENDING: {_D.SENT, _D.SKIPPED, _D.ALREADY},
        _D.ALREADY: set(),
        _D.SENT: {_D.UPDATING, _D.COMMITTED, _D.FAILED, _D.TIMED_OUT},
        _D.UPDATING: {_D.UPDATING, _D.COMMITTED, _D.FAILED, _D.TIMED_OUT},
        _D.COMMITTED: {_D.REVERTING},
        _D.FAILED: set(),
        # A timed-out device that commits late while the rollout is being rolled back is reverted.
        _D.TIMED_OUT: {_D.REVERTING},
        _D.SKIPPED: set(),
        _D.REVERTING: {_D.REVERTED, _D.REVERT_FAILED},
        _D.REVERTED: set(),
        _D.REVERT_FAILED: set(),
    }
)

IN_FLIGHT = frozenset({DeviceState.SENT, DeviceState.UPDATING, DeviceState.REVERTING})
DEPLOY_FAILURES = frozenset({DeviceState.FAILED, DeviceState.TIMED_OUT})


class Outcome(str, Enum):
    """What a device's OTA state report means for the command it refers to."""

    PROGRESS = "progress"  # a non-terminal state (downloading, verifying, ..., active)
    SUCCEEDED = "succeeded"  # committed
    FAILED = "failed"  # failed or rolled_back


@dataclass(frozen=True)
class Report:
    """Event: what a device reported on its `ota/state` about command `command_id`."""

    device: str
    command_id: str
    outcome: Outcome
    ota_state: str | None = None  # the raw OTA state
    reason: str | None = None
    progress: float | None = None  # 0..1 while downloading
    detail: str | None = None  # the device's own words for a failure


class CommandKind(str, Enum):
    """What the gateway asks a device to do."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class DeployRequest:
    """What `edge-gateway deploy` asks for: the model, the devices and the waves' options."""

    model: str
    version: int
    devices: list[str]
    canary: int
    wave_size: int
    max_failures: int
    timeout_s: float


@dataclass(frozen=True)
class Send:
    """Action: sign and publish a command to `device`."""

    device: str
    kind: CommandKind
    command_id: str


@dataclass
class DeviceSlot:
    """One device's position in a rollout."""

    device: str
    wave: int  # 0 = canary, then 1, 2, ...
    state: DeviceState = DeviceState.PENDING
    command_id: str | None = None
    revert_command_id: str | None = None
    sent_at: float | None = None
    deadline: float | None = None
    finished_at: float | None = None
    previous: tuple[str, int] | None = None  # (model name, version) it ran before; rollback target
    ota_state: str | None = None  # last raw OTA state the device reported for our command
    progress: float | None = None  # 0..1 while downloading
    reason: str | None = None
    detail: str | None = None  # the device's own words for a failure ("v3 is not above v3")

    def move(self, new: DeviceState) -> None:
        """Change state, raising IllegalTransition when the table forbids it."""
        self.state = check_transition(DEVICE_TRANSITIONS, f"device {self.device}", self.state, new)


@dataclass
class Rollout:
    """A rollout of one model version to a list of devices. Mutated only through its methods."""

    id: int
    uid: str  # random hex, makes command ids unique across gateway databases
    model_name: str
    model_version: int
    slots: dict[str, DeviceSlot]
    wave_size: int
    max_failures: int
    timeout_s: float
    state: RolloutState = RolloutState.CANARY
    current_wave: int = 0
    reason: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    action: CommandKind = CommandKind.DEPLOY  # rollback: each device back to `slot.previous`
    undoes: int | None = None  # the rollout a rollback rollout takes back
    dirty: set[str] = field(default_factory=set)  # devices changed since the last save

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def plan(
        cls,
        id: int,
        uid: str,
        req: DeployRequest,
        now: float,
        action: CommandKind = CommandKind.DEPLOY,
        undoes: int | None = None,
    ) -> Rollout:
        """Split `req.devices` (in the given order) into the canary and waves of `wave_size`."""
        model_name, model_version = req.model, req.version
        devices, canary, wave_size = req.devices, req.canary, req.wave_size
        max_failures, timeout_s = req.max_failures, req.timeout_s
        if not devices:
            raise ValueError("a rollout needs at least one device")
        if len(set(devices)) != len(devices):
            raise ValueError("devices must be unique")
        if canary < 0 or wave_size < 1 or max_failures < 1 or timeout_s <= 0:
            raise ValueError("canary >= 0, wave_size >= 1, max_failures >= 1, timeout_s > 0")
        canary = min(canary, len(devices))
        slots: dict[str, DeviceSlot] = {}
        for i, dev in enumerate(devices):
            wave = 0 if i < canary else 1 + (i - canary) // wave_size
            slots[dev] = DeviceSlot(device=dev, wave=wave)
        return cls(
            id=id,
            uid=uid,
            model_name=model_name,
            model_version=model_version,
            slots=slots,
            wave_size=wave_size,
            max_failures=max_failures,
            timeout_s=timeout_s,
            created_at=now,
            action=action,
            undoes=undoes,
            dirty=set(slots),
        )

    # -- queries --------------------------------------------------------------------------------

    @property
    def terminal(self) -> bool:
        return self.state in ROLLOUT_TERMINAL

    @property
    def last_wave(self) -> int:
        return max(s.wave for s in self.slots.values())

    def wave_slots(self, wave: int) -> list[DeviceSlot]:
        return [s for s in self.slots.values() if s.wave == wave]

    def counts(self) -> dict[str, int]:
        """Number of devices in each state (only states that occur)."""
        out: dict[str, int] = {}
        for s in self.slots.values():
            out[s.state.value] = out.get(s.state.value, 0) + 1
        return out

    def command_id(self, device: str, kind: CommandKind) -> str:
        """Deterministic id of the command of `kind` for `device` in this rollout.

        `<uid>-d<position>` for a deploy, `<uid>-r<position>` for a rollback: at most 64
        characters of [A-Za-z0-9-], as the protocol requires.
        """
        position = list(self.slots).index(device)
        return f"{self.uid}-{'d' if kind is CommandKind.DEPLOY else 'r'}{position}"

    # -- events ---------------------------------------------------------------------------------

    def start(self, now: float, already: frozenset[str] = frozenset()) -> list[Send]:
        """Begin: devices in `already` run the target version and are left alone."""
        for dev in already:
            if dev in self.slots:
                self._move(self.slots[dev], DeviceState.ALREADY, now, reason="already on version")
        first = 0 if self.wave_slots(0) else 1
        if first == 1:
            self._set_state(RolloutState.WAVES)
        self.current_wave = first
        return self._dispatch(first, now) + self._advance(now)

    def on_report(self, rep: Report, now: float) -> list[Send] | None:
        """A device reported an OTA state for one of its commands. None when it is not ours
        (ignored)."""
        slot = self.slots.get(rep.device)
        if slot is None or self.terminal and slot.state not in IN_FLIGHT:
            return None
        actions: list[Send] = []
        outcome, command_id = rep.outcome, rep.command_id
        if outcome is Outcome.FAILED and command_id in (slot.command_id, slot.revert_command_id):
            slot.detail = rep.detail
        if command_id == slot.command_id:
            if slot.state in (DeviceState.SENT, DeviceState.UPDATING):
                slot.ota_state, slot.progress = rep.ota_state, rep.progress
                if outcome is Outcome.PROGRESS:
                    self._move(slot, DeviceState.UPDATING, now)
                elif outcome is Outcome.SUCCEEDED:
                    self._move(slot, DeviceState.COMMITTED, now, finished=True)
                    if self._reverts:
                        actions += self._revert(slot, now)
                else:
                    self._move(
                        slot, DeviceState.FAILED, now, reason=rep.reason or "failed", finished=True
                    )
            elif (
                slot.state is DeviceState.TIMED_OUT
                and outcome is Outcome.SUCCEEDED
                and self._reverts
            ):
                slot.ota_state = rep.ota_state
                actions += self._revert(slot, now)
            else:
                return None  # a repeated or late report for a settled device
        elif command_id == slot.revert_command_id and slot.state is DeviceState.REVERTING:
            slot.ota_state, slot.progress = rep.ota_state, rep.progress
            if outcome is Outcome.SUCCEEDED:
                self._move(slot, DeviceState.REVERTED, now, finished=True)
            elif outcome is Outcome.FAILED:
                self._move(slot, DeviceState.REVERT_FAILED, now, reason=rep.reason, finished=True)
            else:
                self.dirty.add(rep.device)
        else:
            return None
        return actions + self._advance(now)

    def tick(self, now: float) -> list[Send]:
        """Time passed: devices past their deadline time out."""
        for slot in self.slots.values():
            if slot.state in IN_FLIGHT and slot.deadline is not None and now >= slot.deadline:
                if slot.state is DeviceState.REVERTING:
                    self._move(
                        slot, DeviceState.REVERT_FAILED, now, reason="timeout", finished=True
                    )
                else:
                    self._move(slot, DeviceState.TIMED_OUT, now, reason="timeout", finished=True)
        return self._advance(now)

    def fail_send(self, device: str, reason: str, now: float) -> list[Send]:
        """The command for `device` could not be built or sent: count it as failed."""
        slot = self.slots[device]
        if slot.state is DeviceState.REVERTING:
            self._move(slot, DeviceState.REVERT_FAILED, now, reason=reason, finished=True)
        else:
            self._move(slot, DeviceState.FAILED, now, reason=reason, finished=True)
        return self._advance(now)

    def abort(self, reason: str, now: float) -> list[Send]:
        """Operator abort: stop sending, revert devices that committed. Raises
        IllegalTransition unless the rollout is running (canary or waves)."""
        return self._begin_rollback(reason, now) + self._advance(now)

    # -- internals ------------------------------------------------------------------------------

    @property
    def _reverts(self) -> bool:
        """A device that commits now is sent back (a deploy rollout being rolled back)."""
        return self.state is RolloutState.ROLLING_BACK and self.action is CommandKind.DEPLOY

    def _set_state(self, new: RolloutState) -> None:
        self.state = check_transition(ROLLOUT_TRANSITIONS, f"rollout {self.id}", self.state, new)

    def _move(
        self,
        slot: DeviceSlot,
        new: DeviceState,
        now: float,
        *,
        reason: str | None = None,
        finished: bool = False,
    ) -> None:
        slot.move(new)
        if reason is not None:
            slot.reason = reason
        if finished:
            slot.finished_at = now
        self.dirty.add(slot.device)

    def _dispatch(self, wave: int, now: float) -> list[Send]:
        out = []
        for slot in self.wave_slots(wave):
            if slot.state is DeviceState.PENDING:
                slot.command_id = self.command_id(slot.device, self.action)
                slot.sent_at, slot.deadline = now, now + self.timeout_s
                self._move(slot, DeviceState.SENT, now)
                out.append(Send(slot.device, self.action, slot.command_id))
        return out

    def _revert(self, slot: DeviceSlot, now: float) -> list[Send]:
        slot.revert_command_id = self.command_id(slot.device, CommandKind.ROLLBACK)
        slot.sent_at, slot.deadline, slot.finished_at = now, now + self.timeout_s, None
        slot.ota_state, slot.progress = None, None  # None until the device answers the rollback
        self._move(slot, DeviceState.REVERTING, now)
        return [Send(slot.device, CommandKind.ROLLBACK, slot.revert_command_id)]

    def _begin_rollback(self, reason: str, now: float) -> list[Send]:
        self._set_state(RolloutState.ROLLING_BACK)
        self.reason = reason
        out: list[Send] = []
        for slot in self.slots.values():
            if slot.state is DeviceState.PENDING:
                self._move(slot, DeviceState.SKIPPED, now, reason="rollout aborted", finished=True)
            elif slot.state is DeviceState.COMMITTED and self.action is CommandKind.DEPLOY:
                out += self._revert(slot, now)  # a rollback rollout has nothing to revert to
        return out

    def _advance(self, now: float) -> list[Send]:
        out: list[Send] = []
        while True:
            before = (self.state, self.current_wave)
            if self.state is RolloutState.CANARY:
                canary = self.wave_slots(0)
                bad = [s for s in canary if s.state in DEPLOY_FAILURES]
                if bad:
                    s = bad[0]
                    out += self._begin_rollback(
                        f"canary {s.device} {s.state.value}: {s.reason}", now
                    )
                elif all(s.state in (DeviceState.COMMITTED, DeviceState.ALREADY) for s in canary):
                    if self.last_wave >= 1:
                        self._set_state(RolloutState.WAVES)
                        self.current_wave = 1
                        out += self._dispatch(1, now)
                    else:
                        self._finish(RolloutState.SUCCEEDED, now)
            elif self.state is RolloutState.WAVES:
                failed = [
                    s for s in self.slots.values() if s.wave >= 1 and s.state in DEPLOY_FAILURES
                ]
                if len(failed) >= self.max_failures:
                    names = ", ".join(f"{s.device} ({s.reason})" for s in failed)
                    out += self._begin_rollback(
                        f"{len(failed)} device(s) failed "
                        f"(max_failures {self.max_failures}): {names}",
                        now,
                    )
                elif all(s.state not in IN_FLIGHT for s in self.wave_slots(self.current_wave)):
                    if self.current_wave < self.last_wave:
                        self.current_wave += 1
                        out += self._dispatch(self.current_wave, now)
                    else:
                        self._finish(RolloutState.SUCCEEDED, now)
            elif self.state is RolloutState.ROLLING_BACK:
                if all(s.state not in IN_FLIGHT for s in self.slots.values()):
                    self._finish(RolloutState.ABORTED, now)
            if (self.state, self.current_wave) == before:
                return out

    def _finish(self, state: RolloutState, now: float) -> None:
        self._set_state(state)
        self.finished_at = now
