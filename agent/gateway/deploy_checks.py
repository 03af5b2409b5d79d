"""Whether a deploy request can start: pure checks over the registry and the device list.

`check_deploy` raises `DeployRefused` with a reason (never an HTTP status: the HTTP side maps
reasons to statuses in one place) or returns, per device, the model it runs now (the rollback
target) and the devices that already run the target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from agent.gateway.devices import DeviceRow
from agent.util.errors import Refused


class DeployRefusal(str, Enum):
    """Why a deploy or abort was refused."""

    NO_DEVICES = "no_devices"
    DUPLICATE_DEVICES = "duplicate_devices"
    UNKNOWN_MODEL = "unknown_model"  # MODEL@VERSION not in the registry
    UNKNOWN_DEVICE = "unknown_device"  # not enrolled
    NEVER_REPORTED = "never_reported"  # enrolled, no status yet
    OFFLINE = "offline"
    BUSY = "busy"  # in a running rollout
    MODEL_UNREPORTED = "model_unreported"
    PREVIOUS_UNREGISTERED = "previous_unregistered"  # could not be rolled back
    BAD_PLAN = "bad_plan"  # canary/wave options the planner refuses
    NO_SUCH_ROLLOUT = "no_such_rollout"
    NOT_RUNNING = "not_running"  # abort of a finished rollout
    NO_ROLLBACK_TARGET = "no_rollback_target"
    BELOW_FLOOR = "below_floor"  # the device would refuse it (lower_version): not above its floor
    NOTHING_TO_ROLL_BACK = "nothing_to_roll_back"


class DeployRefused(Refused[DeployRefusal]):
    """A deploy or abort request that cannot be carried out; `reason` says which rule."""


@dataclass(frozen=True)
class DeployTarget:
    """What a deploy needs to know about its devices once the checks pass."""

    previous: dict[str, tuple[str, int] | None]  # None: already on the target
    already: frozenset[str]


def check_deploy(
    model: tuple[str, int],
    devices: list[str],
    rows: Mapping[str, DeviceRow | None],
    registered: Callable[[str, int], bool],
    busy: Mapping[str, int],
    floors: Mapping[str, Mapping[str, int]] | None = None,
    kind: str = "detector",
) -> DeployTarget:
    """Refuse (DeployRefused) or return the rollback targets. `rows` maps every requested device
    to its enrolled row (None: not enrolled); `busy` maps devices to their running rollout;
    `floors` maps devices to the highest version per model name they committed before.

    A Florence-2 model (`kind` florence2) has no gateway-side rollback target: devices do not
    report their fallback model in `status`, and the device's own probation rolls a bad one
    back (docs/ota.md); an abort stops the waves."""
    _check_list(devices)
    if not registered(*model):
        raise DeployRefused(
            DeployRefusal.UNKNOWN_MODEL,
            f"model {model[0]}@{model[1]} is not in the registry (edge-gateway models list)",
        )
    check_devices(rows, busy)
    if kind != "detector":
        return DeployTarget({d: None for d in rows}, frozenset())
    target = _targets(model, rows, registered)
    check_floors(model, target, floors or {})
    return target


def check_floors(
    model: tuple[str, int], target: DeployTarget, floors: Mapping[str, Mapping[str, int]]
) -> None:
    """Refuse before anything is sent when a device would answer `lower_version`: the target
    is not above the version it runs or the highest it ever committed (its floor)."""
    name, version = model
    low = []
    for d, prev in target.previous.items():
        if prev is None:
            continue  # already on the target
        floor = max(floors.get(d, {}).get(name, 0), prev[1] if prev[0] == name else 0)
        if version <= floor:
            low.append(f"{d} (runs {prev[0]}@{prev[1]}, floor v{floor})")
    if low:
        raise DeployRefused(
            DeployRefusal.BELOW_FLOOR,
            f"{name} v{version} is not above the version these devices committed, so they "
            f"would refuse it (lower_version): {', '.join(low)}. To go back, use "
            "`edge-gateway rollback ROLLOUT_ID`; to ship old bytes again, register them under a "
            "version above the floor.",
        )


def _check_list(devices: list[str]) -> None:
    if not devices:
        raise DeployRefused(DeployRefusal.NO_DEVICES, "no devices given")
    dupes = sorted({d for d in devices if devices.count(d) > 1})
    if dupes:
        raise DeployRefused(
            DeployRefusal.DUPLICATE_DEVICES, f"devices listed twice: {', '.join(dupes)}"
        )


def check_devices(rows: Mapping[str, DeviceRow | None], busy: Mapping[str, int]) -> None:
    """Every device enrolled, reported, online and in no running rollout (else DeployRefused)."""
    unknown = sorted(d for d, row in rows.items() if row is None)
    if unknown:
        raise DeployRefused(
            DeployRefusal.UNKNOWN_DEVICE,
            f"unknown device(s): {', '.join(unknown)} (not enrolled: edge-gateway devices "
            "enroll ID)",
        )
    silent = sorted(d for d, row in rows.items() if row is not None and row.status is None)
    if silent:
        raise DeployRefused(
            DeployRefusal.NEVER_REPORTED,
            f"unknown device(s): {', '.join(silent)} (enrolled, never reported a status)",
        )
    offline = sorted(d for d, row in rows.items() if row is not None and not row.online)
    if offline:
        raise DeployRefused(
            DeployRefusal.OFFLINE,
            f"device(s) offline: {', '.join(offline)}; they would only time out "
            "(bring them back or leave them out)",
        )
    if busy:
        listing = ", ".join(f"{d} (rollout {rid})" for d, rid in sorted(busy.items()))
        raise DeployRefused(
            DeployRefusal.BUSY,
            f"refused: device(s) already in a running rollout: {listing}; wait for it to "
            f"finish or abort it (edge-gateway abort ID)",
        )


def _targets(
    model: tuple[str, int],
    rows: Mapping[str, DeviceRow | None],
    registered: Callable[[str, int], bool],
) -> DeployTarget:
    previous: dict[str, tuple[str, int] | None] = {}
    already: set[str] = set()
    for d, row in rows.items():
        running = (row.status or {}).get("model") if row else None
        if running is None:
            raise DeployRefused(
                DeployRefusal.MODEL_UNREPORTED, f"device {d} has not reported its model yet"
            )
        prev = (str(running["name"]), int(running["version"]))
        if prev == model:
            already.add(d)
            previous[d] = None
            continue
        if not registered(*prev):
            raise DeployRefused(
                DeployRefusal.PREVIOUS_UNREGISTERED,
                f"device {d} runs {prev[0]}@{prev[1]}, which is not in the registry, "
                "so it could not be rolled back; register it first (edge-gateway "
                f"models add FILE --name {prev[0]} --version {prev[1]})",
            )
        previous[d] = prev
    return DeployTarget(previous, frozenset(already))
