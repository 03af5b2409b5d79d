"""Going back: which devices of a finished rollout `edge-gateway rollback ID` sends back, and
to which model. Pure checks over the rollout, the device list and the registry.

A device goes back with the signed `rollback` action (`agent.contracts.ota.OtaAction`) to the
model it kept when it committed the rollout's version (`slot.previous`); the device accepts
exactly that model (`agent.ota.validate.check_rollback_target`). Refusals name the rule and the
device, as `check_deploy` does; nothing is sent unless every device can go back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.gateway.deploy_checks import DeployRefusal, DeployRefused, check_devices
from agent.gateway.devices import DeviceRow
from agent.gateway.rollout import CommandKind, DeviceState, Rollout


@dataclass(frozen=True)
class RollbackPlan:
    """The devices to send back (in the source rollout's order) and each one's target."""

    devices: list[str]
    previous: dict[str, tuple[str, int] | None]


def plan_rollback(
    source: Rollout,
    rows: Mapping[str, DeviceRow | None],
    registered: Callable[[str, int], bool],
    busy: Mapping[str, int],
) -> RollbackPlan:
    """The plan to take `source` back, or DeployRefused. `rows`: the enrolled row of every
    device of `source`; `busy`: devices in a running rollout."""
    what = f"{source.model_name}@{source.model_version}"
    if source.action is not CommandKind.DEPLOY:
        raise DeployRefused(
            DeployRefusal.NOTHING_TO_ROLL_BACK,
            f"rollout {source.id} is itself a rollback; deploy a new version instead",
        )
    if not source.terminal:
        raise DeployRefused(
            DeployRefusal.BUSY,
            f"rollout {source.id} is still {source.state.value}; abort it instead "
            f"(edge-gateway abort {source.id}): that rolls back the devices that committed",
        )
    devices = [s.device for s in source.slots.values() if s.state is DeviceState.COMMITTED]
    if not devices:
        states = ", ".join(f"{d} {s.state.value}" for d, s in source.slots.items())
        raise DeployRefused(
            DeployRefusal.NOTHING_TO_ROLL_BACK,
            f"no device of rollout {source.id} is left on {what} ({states})",
        )
    check_devices({d: rows.get(d) for d in devices}, {d: busy[d] for d in devices if d in busy})
    previous: dict[str, tuple[str, int] | None] = {}
    for d in devices:
        _check_running(d, rows[d], source)
        prev = source.slots[d].previous
        if prev is None or not registered(*prev):
            raise DeployRefused(
                DeployRefusal.NO_ROLLBACK_TARGET,
                f"device {d}: the model it ran before {what} is "
                f"{'unknown' if prev is None else f'{prev[0]}@{prev[1]}, not in the registry'}",
            )
        previous[d] = prev
    return RollbackPlan(devices, previous)


def _check_running(device: str, row: DeviceRow | None, source: Rollout) -> None:
    running = ((row.status if row else None) or {}).get("model")
    now = None if running is None else (str(running["name"]), int(running["version"]))
    if now != (source.model_name, source.model_version):
        shown = "an unreported model" if now is None else f"{now[0]}@{now[1]}"
        raise DeployRefused(
            DeployRefusal.NOTHING_TO_ROLL_BACK,
            f"device {device} runs {shown} now, not {source.model_name}@"
            f"{source.model_version} of rollout {source.id}; it has nothing to go back from",
        )
