"""Form fields of the web page, checked like the JSON API's bodies (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.contracts.ids import check_id


class FormError(ValueError):
    """A form field that cannot be used; the message names it."""


def optional_number(form: Mapping[str, Any], name: str, low: float, kind: type = int) -> Any:
    """An int (or float) field >= `low`, or None when left empty."""
    raw = str(form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise FormError(f"{name.replace('_', ' ')}: {raw!r} is not a number") from None
    if value < low:
        raise FormError(f"{name.replace('_', ' ')}: must be at least {low}")
    return value


@dataclass(frozen=True)
class DeployForm:
    """The deploy form: model@version, devices (canary first), wave options."""

    model: str = ""
    devices: list[str] = field(default_factory=list)
    canary: int | None = None
    wave_size: int | None = None
    max_failures: int | None = None
    timeout_s: float | None = None

    @property
    def target(self) -> tuple[str, int]:
        name, _, version = self.model.partition("@")
        return name, int(version)


def parse_deploy(form: Mapping[str, Any], devices: list[str]) -> DeployForm:
    """`devices`: the ticked boxes in page order. FormError for anything unusable."""
    model = str(form.get("model") or "")
    name, sep, version = model.partition("@")
    if not sep or not version.isdigit():
        raise FormError("model: choose a registered model version")
    if not devices:
        raise FormError("devices: tick at least one device")
    for d in devices:
        try:
            check_id(d, "device id")
        except ValueError as err:
            raise FormError(str(err)) from None
    return replace(wave_options(form), model=model, devices=devices)


def wave_options(form: Mapping[str, Any]) -> DeployForm:
    """The canary/wave/failure/timeout fields (of the deploy form, or of a rollback
    confirmation: then model and devices stay empty)."""
    return DeployForm(
        canary=optional_number(form, "canary", 0),
        wave_size=optional_number(form, "wave_size", 1),
        max_failures=optional_number(form, "max_failures", 1),
        timeout_s=optional_number(form, "timeout_s", 1, float),
    )
