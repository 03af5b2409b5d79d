"""Which model a manager updates: the detector, or the Florence-2 fallback.

Each kind has its own slot on the device: its own store (pointer, journal, ledger, installed
versions), its own retained state topic and its own trial of a candidate. The command topic
is shared; `CommandRouter` hands each command to the manager of its manifest's kind, so one
command is only ever handled (and its sequence consumed) by one slot.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.contracts.manifest import DEFAULT_KIND, ModelKind
from agent.ota.activation import TrialFn
from agent.ota.trial import trial

if TYPE_CHECKING:
    from agent.engines.build import Platform
    from agent.ota.runner import BuildHook
    from agent.ota.sandbox import CandidateSpec

log = structlog.get_logger(__name__)

MessageCallback = Callable[[str, bytes], None]


@dataclass(frozen=True, eq=False)
class ModelSlot:
    """The kind of model a manager swaps, what of that kind this device runs, and how a
    candidate of that kind is built and tried."""

    kind: ModelKind = DEFAULT_KIND
    trial: TrialFn = field(default=trial)
    runnable_formats: frozenset[str] = frozenset({"onnx"})
    platform: Platform | None = None  # TensorRT + GPU, for prebuilt engines' compat
    build: BuildHook | None = None  # e.g. the TensorRT engine build of an installed ONNX
    candidate: CandidateSpec | None = None  # how the sandboxed trial loads a candidate

    def store_dir(self, state_dir: Path) -> Path:
        """`<state_dir>/models` for the detector (as before), `<state_dir>/models-<kind>`
        otherwise (never inside the detector's store, whose prune would delete it)."""
        return state_dir / ("models" if self.kind == DEFAULT_KIND else f"models-{self.kind}")


def command_kind(payload: bytes) -> str:
    """The model kind a command payload names (`manifest.manifest.kind`), without trusting it:
    anything unreadable goes to the detector's manager, which rejects it with its reason."""
    try:
        data = json.loads(payload)
        kind = data["manifest"]["manifest"].get("kind", DEFAULT_KIND)
    except (ValueError, KeyError, TypeError, AttributeError):
        return DEFAULT_KIND
    return kind if isinstance(kind, str) else DEFAULT_KIND


class CommandRouter:
    """One subscription to the command topic; each payload goes to its kind's intake.

    Routing on an unverified field is safe: the receiving manager verifies the signed manifest
    (and refuses a kind it does not run), so a forged kind only picks who says no.
    """

    def __init__(self, routes: dict[str, MessageCallback]) -> None:
        if DEFAULT_KIND not in routes:
            raise ValueError("the detector's manager must be routed")
        self._routes = routes

    def on_message(self, topic: str, payload: bytes) -> None:
        """Network-thread callback: hand over to the intake's non-blocking queue."""
        kind = command_kind(payload)
        self._routes.get(kind, self._routes[DEFAULT_KIND])(topic, payload)
