"""The rollout state machine, driven by literal events and a frozen clock."""

from __future__ import annotations

import pytest

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
)

T0 = 1_000.0


def plan(
    devices: list[str],
    canary: int = 1,
    wave_size: int = 2,
    max_failures: int = 1,
    timeout_s: float = 60.0,
) -> Rollout:
    req = DeployRequest("m", 2, devices, canary, wave_size, max_failures, timeout_s)
    return Rollout.plan(id=1, uid="abc123", req=req, now=T0)


def report(
    r: Rollout,
    dev: str,
    outcome: Outcome,
    now: float = T0 + 1,
    kind: CommandKind = CommandKind.DEPLOY,
):
    slot = r.slots[dev]
    cid = slot.command_id if kind is CommandKind.DEPLOY else slot.revert_command_id
    assert cid is not None
    return r.on_report(
        Report(dev, cid, outcome, reason=None if outcome is not Outcome.FAILED else "x"), now
    )


def sent_to(actions) -> list[tuple[str, str]]:
    return [(a.device, a.kind.value) for a in actions]


@pytest.mark.parametrize(
    ("devices", "canary", "wave_size", "waves"),
    [
        (["a", "b", "c"], 1, 2, [0, 1, 1]),  # canary a, then one wave of two
        (["a", "b", "c", "d", "e"], 1, 2, [0, 1, 1, 2, 2]),  # two waves after the canary
        (["a", "b", "c"], 0, 1, [1, 2, 3]),  # no canary: waves of one
        (["a", "b"], 5, 2, [0, 0]),  # canary larger than the fleet: everyone is canary
    ],
)
def test_plan_splits_canary_and_waves(devices, canary, wave_size, waves) -> None:
    """Devices are split, in order, into the canary (wave 0) and waves of wave_size."""
    r = plan(devices, canary=canary, wave_size=wave_size)
    assert [r.slots[d].wave for d in devices] == waves


def test_canary_first_then_waves_then_succeeded() -> None:
    """Only the canary gets the command first; the others follow once it commits."""
    r = plan(["a", "b", "c", "d", "e"], canary=1, wave_size=2)
    assert sent_to(r.start(T0)) == [("a", "deploy")]
    assert report(r, "a", Outcome.PROGRESS) == []
    assert r.slots["a"].state is DeviceState.UPDATING
    assert sent_to(report(r, "a", Outcome.SUCCEEDED)) == [("b", "deploy"), ("c", "deploy")]
    assert r.state is RolloutState.WAVES
    assert report(r, "b", Outcome.SUCCEEDED) == []
    assert sent_to(report(r, "c", Outcome.SUCCEEDED)) == [("d", "deploy"), ("e", "deploy")]
    report(r, "d", Outcome.SUCCEEDED)
    report(r, "e", Outcome.SUCCEEDED)
    assert r.state is RolloutState.SUCCEEDED
    assert r.counts() == {"committed": 5}


def test_canary_failure_aborts_without_touching_others() -> None:
    """A failing canary aborts the rollout; the other devices are skipped, never sent."""
    r = plan(["a", "b", "c"])
    r.start(T0)
    assert report(r, "a", Outcome.FAILED) == []
    assert r.state is RolloutState.ABORTED
    assert [r.slots[d].state for d in "abc"] == [
        DeviceState.FAILED,
        DeviceState.SKIPPED,
        DeviceState.SKIPPED,
    ]
    assert "canary a failed" in (r.reason or "")


def test_wave_failures_reaching_threshold_revert_committed_devices() -> None:
    """max_failures failures in the waves abort and roll back every committed device."""
    r = plan(["a", "b", "c", "d", "e"], canary=1, wave_size=2, max_failures=1)
    r.start(T0)
    report(r, "a", Outcome.SUCCEEDED)
    report(r, "b", Outcome.SUCCEEDED)
    actions = report(r, "c", Outcome.FAILED)
    assert sorted(sent_to(actions)) == [("a", "rollback"), ("b", "rollback")]
    assert r.state is RolloutState.ROLLING_BACK
    assert r.slots["d"].state is DeviceState.SKIPPED
    report(r, "a", Outcome.SUCCEEDED, kind=CommandKind.ROLLBACK)
    report(r, "b", Outcome.FAILED, kind=CommandKind.ROLLBACK)
    assert r.state is RolloutState.ABORTED
    assert r.slots["a"].state is DeviceState.REVERTED
    assert r.slots["b"].state is DeviceState.REVERT_FAILED


def test_failures_below_threshold_let_the_rollout_finish() -> None:
    """With max_failures 2, one failed device does not stop the rollout."""
    r = plan(["a", "b", "c"], canary=1, wave_size=2, max_failures=2)
    r.start(T0)
    report(r, "a", Outcome.SUCCEEDED)
    report(r, "b", Outcome.FAILED)
    report(r, "c", Outcome.SUCCEEDED)
    assert r.state is RolloutState.SUCCEEDED
    assert r.counts() == {"committed": 2, "failed": 1}


@pytest.mark.parametrize(
    ("elapsed", "state"),
    [
        (59.9, DeviceState.SENT),  # just before the deadline: still waiting
        (60.0, DeviceState.TIMED_OUT),  # at the deadline: timed out
    ],
)
def test_device_deadline(elapsed: float, state: DeviceState) -> None:
    """A device without a terminal state times out exactly at its deadline."""
    r = plan(["a", "b"], timeout_s=60.0)
    r.start(T0)
    r.tick(T0 + elapsed)
    assert r.slots["a"].state is state


def test_timed_out_canary_aborts() -> None:
    """A canary that never answers times out and the rollout aborts."""
    r = plan(["a", "b"], timeout_s=10.0)
    r.start(T0)
    assert r.tick(T0 + 10) == []
    assert r.state is RolloutState.ABORTED
    assert r.slots["b"].state is DeviceState.SKIPPED


def test_in_flight_device_is_reverted_when_it_commits_after_abort() -> None:
    """A device still updating at abort time is rolled back as soon as it commits."""
    r = plan(["a", "b", "c"], canary=1, wave_size=2, max_failures=1)
    r.start(T0)
    report(r, "a", Outcome.SUCCEEDED)
    report(r, "b", Outcome.FAILED)  # abort: a reverted, c still in flight
    assert r.state is RolloutState.ROLLING_BACK
    assert sent_to(report(r, "c", Outcome.SUCCEEDED)) == [("c", "rollback")]


def test_operator_abort_then_terminal_abort_is_illegal() -> None:
    """abort() works once on a running rollout; aborting an aborted rollout raises."""
    r = plan(["a", "b"])
    r.start(T0)
    r.abort("operator", T0 + 1)
    report(r, "a", Outcome.FAILED)
    assert r.state is RolloutState.ABORTED
    with pytest.raises(IllegalTransition):
        r.abort("again", T0 + 2)


def test_reports_for_other_commands_are_ignored() -> None:
    """A state for a command id the rollout did not send returns None and changes nothing."""
    r = plan(["a", "b"])
    r.start(T0)
    assert r.on_report(Report("a", "someone-else", Outcome.SUCCEEDED), T0 + 1) is None
    assert r.on_report(Report("zz", "x", Outcome.SUCCEEDED), T0 + 1) is None
    assert r.slots["a"].state is DeviceState.SENT


def test_already_current_devices_are_left_alone() -> None:
    """Devices already on the target version are never sent a command nor rolled back."""
    r = plan(["a", "b", "c"], canary=1, wave_size=2)
    assert sent_to(r.start(T0, frozenset({"a"}))) == [("b", "deploy"), ("c", "deploy")]
    report(r, "b", Outcome.SUCCEEDED)
    actions = report(r, "c", Outcome.FAILED)
    assert sent_to(actions) == [("b", "rollback")]


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (DeviceState.PENDING, DeviceState.COMMITTED),  # must be sent first
        (DeviceState.FAILED, DeviceState.COMMITTED),  # failed is terminal
        (DeviceState.SKIPPED, DeviceState.SENT),  # skipped is terminal
        (DeviceState.REVERTED, DeviceState.REVERTING),  # reverted is terminal
    ],
)
def test_illegal_device_transitions_raise(start: DeviceState, target: DeviceState) -> None:
    """The device table rejects transitions it does not list."""
    slot = DeviceSlot(device="a", wave=0, state=start)
    with pytest.raises(IllegalTransition):
        slot.move(target)


def test_command_ids_fit_the_protocol() -> None:
    """Command ids are short, unique per device and kind, and valid protocol ids."""
    from agent.contracts.ota import check_command_id

    r = plan([f"device-{'x' * 50}-{i}" for i in range(3)])
    ids = {r.command_id(d, k) for d in r.slots for k in CommandKind}
    assert len(ids) == 6
    for cid in ids:
        check_command_id(cid)


def test_rollback_clears_the_deploy_ota_state_so_an_unanswered_rollback_is_resent() -> None:
    """The gateway re-sends a rollback while its device has not answered it (ota_state None);
    the deploy's last OTA state must not count as that answer."""
    r = plan(["a", "b", "c"], canary=1, wave_size=2, max_failures=1)
    r.start(T0)
    slot = r.slots["a"]
    assert slot.command_id is not None
    r.on_report(Report("a", slot.command_id, Outcome.SUCCEEDED, ota_state="committed"), T0 + 1)
    assert slot.ota_state == "committed"
    actions = report(r, "b", Outcome.FAILED)
    assert ("a", "rollback") in sent_to(actions)
    assert slot.state is DeviceState.REVERTING and slot.ota_state is None
