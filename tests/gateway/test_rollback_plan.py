"""Going back, pure parts: a rollback rollout in the state machine, the checks of
`rollback ID` and the committed-floor refusal of `deploy` (no I/O, frozen clock)."""

from __future__ import annotations

import pytest

from agent.gateway.deploy_checks import DeployRefusal, DeployRefused, DeployTarget, check_floors
from agent.gateway.devices import DeviceRow
from agent.gateway.rollback import plan_rollback
from agent.gateway.rollout import (
    CommandKind,
    DeployRequest,
    DeviceState,
    Outcome,
    Report,
    Rollout,
    RolloutState,
)


def rollout(action: CommandKind = CommandKind.DEPLOY, devices: int = 3) -> Rollout:
    names = [f"d{i}" for i in range(devices)]
    req = DeployRequest("m", 2, names, canary=1, wave_size=1, max_failures=1, timeout_s=60)
    r = Rollout.plan(id=7, uid="u7", req=req, now=0.0, action=action, undoes=None)
    for s in r.slots.values():
        s.previous = ("m", 1)
    return r


def row(device: str, version: int | None, online: bool = True) -> DeviceRow:
    model = None if version is None else {"name": "m", "version": version}
    status = {"model": model} if version is not None else {"cameras": []}
    return DeviceRow(device, 0.0, online, 1.0, status, None, None, 0)


def test_a_rollback_rollout_sends_rollbacks_in_waves_and_abort_reverts_nothing() -> None:
    r = rollout(CommandKind.ROLLBACK)
    first = r.start(0.0)
    assert [(a.device, a.kind) for a in first] == [("d0", CommandKind.ROLLBACK)]
    assert first[0].command_id == "u7-r0"
    nxt = r.on_report(Report("d0", "u7-r0", Outcome.SUCCEEDED), 1.0)
    assert [(a.device, a.kind) for a in nxt or []] == [("d1", CommandKind.ROLLBACK)]
    assert r.abort("stop", 2.0) == []  # d0 went back: nothing to revert to
    assert r.slots["d0"].state is DeviceState.COMMITTED
    assert r.slots["d2"].state is DeviceState.SKIPPED
    late = r.on_report(Report("d1", "u7-r1", Outcome.SUCCEEDED), 3.0)
    assert late == [] and r.state is RolloutState.ABORTED  # no revert of a late commit either


def test_the_devices_words_are_kept_with_a_failure() -> None:
    r = rollout()
    r.start(0.0)
    failed = Report(
        "d0", "u7-d0", Outcome.FAILED, reason="lower_version", detail="m v2 is not above v2"
    )
    r.on_report(failed, 1.0)
    assert (r.slots["d0"].reason, r.slots["d0"].detail) == ("lower_version", "m v2 is not above v2")


def finished(states: list[DeviceState]) -> Rollout:
    r = rollout(devices=len(states))
    for s, state in zip(r.slots.values(), states, strict=True):
        s.state = state
    r.state = RolloutState.SUCCEEDED
    return r


def test_rollback_plan_takes_the_committed_devices_back_to_their_previous() -> None:
    r = finished([DeviceState.COMMITTED, DeviceState.ALREADY, DeviceState.COMMITTED])
    rows = {d: row(d, 2) for d in r.slots}
    plan = plan_rollback(r, rows, lambda n, v: True, {})
    assert plan.devices == ["d0", "d2"] and plan.previous == {"d0": ("m", 1), "d2": ("m", 1)}


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ("running", DeployRefusal.BUSY, "abort it instead"),
        ("rollback", DeployRefusal.NOTHING_TO_ROLL_BACK, "itself a rollback"),
        ("moved", DeployRefusal.NOTHING_TO_ROLL_BACK, "runs m@1 now"),
        ("offline", DeployRefusal.OFFLINE, "offline"),
        ("busy", DeployRefusal.BUSY, "rollout 9"),
        ("unregistered", DeployRefusal.NO_ROLLBACK_TARGET, "not in the registry"),
        ("none", DeployRefusal.NOTHING_TO_ROLL_BACK, "no device of rollout 7"),
    ],
)
def test_rollback_refusals_name_the_rule(change: str, reason: DeployRefusal, words: str) -> None:
    r = finished([DeviceState.COMMITTED, DeviceState.COMMITTED])
    rows = {d: row(d, 2) for d in r.slots}
    registered, busy = (lambda n, v: True), {}
    if change == "running":
        r.state = RolloutState.WAVES
    elif change == "rollback":
        r.action = CommandKind.ROLLBACK
    elif change == "moved":
        rows["d1"] = row("d1", 1)
    elif change == "offline":
        rows["d1"] = row("d1", 2, online=False)
    elif change == "busy":
        busy = {"d1": 9}
    elif change == "unregistered":
        registered = lambda n, v: False  # noqa: E731
    elif change == "none":
        for s in r.slots.values():
            s.state = DeviceState.FAILED
    with pytest.raises(DeployRefused) as err:
        plan_rollback(r, rows, registered, busy)
    assert err.value.reason is reason and words in err.value.message


def test_deploy_below_the_floor_is_refused_naming_the_versions() -> None:
    target = DeployTarget(
        previous={"a": ("m", 1), "b": ("m", 1), "c": None}, already=frozenset("c")
    )
    check_floors(("m", 3), target, {"a": {"m": 2}})  # above every floor: fine
    with pytest.raises(DeployRefused) as err:
        check_floors(("m", 2), target, {"a": {"m": 2}})
    assert err.value.reason is DeployRefusal.BELOW_FLOOR
    assert (
        "m v2 is not above" in err.value.message and "a (runs m@1, floor v2)" in err.value.message
    )
    assert "b (" not in err.value.message
    with pytest.raises(DeployRefused, match="runs m@1, floor v1"):
        check_floors(("m", 1), DeployTarget({"b": ("m", 1)}, frozenset()), {})
