"""Pure checks of OTA commands, new models and probation health. No disk, no network.

The manager calls these in the protocol's order and persists what they decide:

1. `parse_command` (payload size, JSON, types, path tricks) - in `agent.contracts.ota`
2. command signature, then device id                         - `check_authentic`
3. redelivery of the latest command (idempotent) or a replay  - `classify_delivery`
4. busy                                                        - the manager
5. command expiry, then sequence                              - `check_fresh`
   (from here on the command consumes its sequence number)
6. manifest signature and expiry                               - `agent.trust.ota`
7. pin, version monotonic per name, generation monotonic per    - `check_target`
   kind across names, rollback target kept, compat
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from agent.contracts.manifest import DEFAULT_KIND, Manifest, engine_compat_problems
from agent.contracts.ota import (
    OtaAction,
    OtaCommand,
    OtaRejectedError,
    Reason,
    SignedCommand,
    command_digest,
)
from agent.trust.ota import check_command_expiry, verify_command_signature, verify_manifest
from agent.trust.signing import PublicKeyLike
from agent.types import Detections
from agent.util.models import FrozenModel

if TYPE_CHECKING:
    from agent.engines.build import Platform

SEEN_LIMIT = 256
"""Command ids remembered for replay detection."""

SEQUENCE_CONSUMING = frozenset(
    {
        Reason.MANIFEST_UNSIGNED,
        Reason.MANIFEST_UNKNOWN_KEY,
        Reason.BAD_MANIFEST_SIGNATURE,
        Reason.EXPIRED_MANIFEST,
        Reason.LOWER_VERSION,
        Reason.ROLLBACK_UNAVAILABLE,
        Reason.MODEL_NOT_ALLOWED,
        Reason.INCOMPATIBLE,
        Reason.OVERSIZED,
    }
)
"""Rejections raised after the sequence check: the command is recorded as handled."""


class Ledger(FrozenModel):
    """What the device remembers about commands (persisted; survives restarts)."""

    last_sequence: int = Field(0, ge=0)
    """Highest sequence accepted so far."""
    last_command_id: str | None = None
    """Id of the latest handled command."""
    last_digest: str | None = None
    """command_digest of that command."""
    seen: list[str] = Field(
        default_factory=list, description=f"Ids of the last {SEEN_LIMIT} handled commands."
    )
    max_version: dict[str, int] = Field(default_factory=dict)
    """Highest committed version per model name."""
    max_generation: dict[str, int] = Field(default_factory=dict)
    """Highest committed manifest generation per model kind (detector, florence2)."""

    def record(self, command: SignedCommand) -> Ledger:
        """Return the ledger after `command` consumed its sequence number."""
        seen = [c for c in self.seen if c != command.command_id] + [command.command_id]
        return self.model_copy(
            update={
                "last_sequence": max(self.last_sequence, command.sequence),
                "last_command_id": command.command_id,
                "last_digest": command_digest(command),
                "seen": seen[-SEEN_LIMIT:],
            }
        )

    def committed(
        self, name: str, version: int, kind: str = DEFAULT_KIND, generation: int = 0
    ) -> Ledger:
        """Return the ledger after `name` v`version` (of `kind`, `generation`) was committed."""
        mv = dict(self.max_version)
        mv[name] = max(mv.get(name, 0), version)
        mg = dict(self.max_generation)
        legacy = self.generation_floor(DEFAULT_KIND)
        if legacy is not None:  # keep the detector floor of a ledger from before generations
            mg[DEFAULT_KIND] = max(mg.get(DEFAULT_KIND, 0), legacy)
        mg[kind] = max(mg.get(kind, 0), generation)
        return self.model_copy(update={"max_version": mv, "max_generation": mg})

    def generation_floor(self, kind: str) -> int | None:
        """Highest committed generation of `kind`, or None if none of that kind was committed.

        A ledger written before generations existed only lists versions; those models were
        detectors of generation 0.
        """
        if kind in self.max_generation:
            return self.max_generation[kind]
        if kind == DEFAULT_KIND and self.max_version and not self.max_generation:
            return 0
        return None


@dataclass(frozen=True)
class ModelView:
    """The models the device runs and keeps, as the version checks see them.

    Attributes:
        active: (name, version, sha256) of the running model, or None if unknown.
        previous: (name, version, sha256) of the model kept for rollback, or None.
        active_generation: the running model's manifest generation; None when it has no
            manifest (a configured model that was never signed).
        active_kind: the running model's kind.
    """

    active: tuple[str, int, str] | None
    previous: tuple[str, int, str] | None
    active_generation: int | None = None
    active_kind: str = DEFAULT_KIND


class Delivery(str, Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # the latest command delivered again: re-publish its state


def check_authentic(
    command: SignedCommand, gateway_keys: Mapping[str, PublicKeyLike], device: str
) -> None:
    """Command signature by a trusted gateway key, then the device id."""
    verify_command_signature(command, gateway_keys)
    if command.device != device:
        raise OtaRejectedError(
            Reason.WRONG_DEVICE, f"command is for device {command.device!r}, this is {device!r}"
        )


def classify_delivery(command: SignedCommand, ledger: Ledger) -> Delivery:
    """New command, a redelivery of the latest one (idempotent), or a replay (raises)."""
    if command.command_id == ledger.last_command_id:
        if command_digest(command) == ledger.last_digest:
            return Delivery.DUPLICATE
        raise OtaRejectedError(
            Reason.REPLAYED, f"command id {command.command_id} reused with different content"
        )
    if command.command_id in ledger.seen:
        raise OtaRejectedError(Reason.REPLAYED, f"command {command.command_id} was already handled")
    return Delivery.NEW


def check_fresh(command: SignedCommand, ledger: Ledger, now: datetime | None = None) -> None:
    """Command expiry, then its sequence must exceed the last accepted one."""
    check_command_expiry(command, now)
    if command.sequence <= ledger.last_sequence:
        raise OtaRejectedError(
            Reason.OLD_SEQUENCE,
            f"sequence {command.sequence} is not above the last accepted {ledger.last_sequence}",
        )


RUNNABLE_KINDS = frozenset({DEFAULT_KIND})
"""Model kinds the detector's OTA manager swaps in (the Florence-2 slot has its own manager,
built with `runnable_kinds={"florence2"}`; a device without it refuses florence2 models)."""


def check_target(
    command: OtaCommand,
    manifest: Manifest,
    ledger: Ledger,
    models: ModelView,
    runnable_formats: frozenset[str],
    max_artifact_bytes: int,
    platform: Platform | None = None,
    allowed_models: frozenset[str] | None = None,
    runnable_kinds: frozenset[str] = RUNNABLE_KINDS,
) -> None:
    """Pin, then version and generation (or a rollback to the kept previous), then what runs.

    `allowed_models` is the device's pin (None or empty: no pin). `platform` is this device's
    TensorRT and GPU (None without TensorRT); a prebuilt engine's `compat` must hold on it.
    """
    pinned = bool(allowed_models)
    if allowed_models and manifest.name not in allowed_models:
        raise OtaRejectedError(
            Reason.MODEL_NOT_ALLOWED,
            f"model {manifest.name!r} is not in this device's allowed_models "
            f"({', '.join(sorted(allowed_models))})",
        )
    if command.action is OtaAction.ROLLBACK:
        check_rollback_target(manifest, models)
    else:
        check_version(manifest, ledger, models)
        if not pinned:
            check_generation(manifest, ledger, models)
        if manifest.length > max_artifact_bytes:
            raise OtaRejectedError(
                Reason.OVERSIZED,
                f"artifact of {manifest.length} bytes exceeds the limit of {max_artifact_bytes}",
            )
    check_runnable(manifest, runnable_formats, platform, runnable_kinds)


def check_rollback_target(manifest: Manifest, models: ModelView) -> None:
    """A rollback names exactly the previous model the device keeps."""
    want = (manifest.name, manifest.version, manifest.sha256)
    if models.previous is None or models.previous != want:
        kept = (
            "nothing" if models.previous is None else f"{models.previous[0]} v{models.previous[1]}"
        )
        raise OtaRejectedError(
            Reason.ROLLBACK_UNAVAILABLE,
            f"rollback target {manifest.name} v{manifest.version} is not the kept previous "
            f"model ({kept})",
        )


def check_version(manifest: Manifest, ledger: Ledger, models: ModelView) -> None:
    """A deploy's version is above every version of that name committed or running."""
    floor = ledger.max_version.get(manifest.name, 0)
    if models.active is not None and models.active[0] == manifest.name:
        floor = max(floor, models.active[1])
    if manifest.version <= floor:
        raise OtaRejectedError(
            Reason.LOWER_VERSION, f"{manifest.name} v{manifest.version} is not above v{floor}"
        )


def generation_floor(kind: str, ledger: Ledger, models: ModelView) -> int | None:
    """Highest generation of `kind` committed or running here; None if there is none yet."""
    floors = [ledger.generation_floor(kind)]
    if models.active_kind == kind and models.active_generation is not None:
        floors.append(models.active_generation)
    known = [f for f in floors if f is not None]
    return max(known) if known else None


def check_generation(manifest: Manifest, ledger: Ledger, models: ModelView) -> None:
    """Generations never go back within a kind; a change of name needs a higher one.

    Without this, an old manifest under another name (still validly signed) would be a
    downgrade the per-name version check cannot see.
    """
    floor = generation_floor(manifest.kind, ledger, models)
    if floor is None:
        return  # nothing of this kind ran here yet
    same_name = (
        models.active is not None
        and models.active_kind == manifest.kind
        and models.active[0] == manifest.name
    )
    if same_name and manifest.generation < floor:
        raise OtaRejectedError(
            Reason.LOWER_VERSION,
            f"{manifest.name} v{manifest.version} has generation {manifest.generation}, "
            f"below this device's {manifest.kind} generation {floor}",
        )
    if not same_name and manifest.generation <= floor:
        running = "nothing" if models.active is None else models.active[0]
        raise OtaRejectedError(
            Reason.LOWER_VERSION,
            f"{manifest.name} v{manifest.version} (generation {manifest.generation}) would "
            f"replace {running} under another name; that needs a {manifest.kind} generation "
            f"above {floor}",
        )


def check_runnable(
    manifest: Manifest,
    runnable_formats: frozenset[str],
    platform: Platform | None,
    runnable_kinds: frozenset[str] = RUNNABLE_KINDS,
) -> None:
    """The model's kind and format run here, and a prebuilt engine's compat holds."""
    if manifest.kind not in runnable_kinds:
        raise OtaRejectedError(
            Reason.INCOMPATIBLE,
            f"kind {manifest.kind!r} is not swapped by this device's OTA (runs: "
            f"{sorted(runnable_kinds)})",
        )
    if manifest.format not in runnable_formats:
        raise OtaRejectedError(
            Reason.INCOMPATIBLE,
            f"format {manifest.format!r} does not run here (runs: {sorted(runnable_formats)})",
        )
    if manifest.format == "engine":
        problems = engine_compat_problems(
            manifest.compat,
            tensorrt_version=None if platform is None else platform.tensorrt_version,
            compute_capability=None if platform is None else platform.compute_capability,
            gpu_name=None if platform is None else platform.gpu_name,
        )
        if problems:
            raise OtaRejectedError(
                Reason.INCOMPATIBLE,
                f"engine {manifest.name} v{manifest.version}: {'; '.join(problems)}",
            )


@dataclass(frozen=True)
class Accepted:
    """Outcome of `validate_command` for a command to carry out (or re-announce)."""

    delivery: Delivery
    manifest: Manifest | None  # None for a duplicate


def validate_command(
    command: OtaCommand,
    *,
    device: str,
    gateway_keys: Mapping[str, PublicKeyLike],
    release_keys: Mapping[str, PublicKeyLike],
    ledger: Ledger,
    models: ModelView,
    busy: bool,
    runnable_formats: frozenset[str],
    max_artifact_bytes: int,
    now: datetime | None = None,
    platform: Platform | None = None,
    allowed_models: frozenset[str] | None = None,
    runnable_kinds: frozenset[str] = RUNNABLE_KINDS,
) -> Accepted:
    """Every check, in the protocol's order. Raises OtaRejectedError with the first failure.

    The caller records the command in the ledger when it is accepted or rejected with a
    reason in `SEQUENCE_CONSUMING`.
    """
    check_authentic(command, gateway_keys, device)
    if classify_delivery(command, ledger) is Delivery.DUPLICATE:
        return Accepted(Delivery.DUPLICATE, None)
    if busy:
        raise OtaRejectedError(Reason.BUSY, "another OTA command is in progress")
    check_fresh(command, ledger, now)
    manifest = verify_manifest(command.manifest, release_keys, now)
    check_target(
        command,
        manifest,
        ledger,
        models,
        runnable_formats,
        max_artifact_bytes,
        platform,
        allowed_models,
        runnable_kinds=runnable_kinds,
    )
    return Accepted(Delivery.NEW, manifest)


# ---------------------------------------------------------------------------------------------
# a new model's first frames


def check_detections(
    dets: Detections, frame_hw: tuple[int, int], num_classes: int, max_detections: int
) -> str | None:
    """Return what is wrong with one frame's detections, or None if they are sane.

    Sane: finite boxes with x1 <= x2 and y1 <= y2 inside the frame (1 px slack), finite
    confidences in [0, 1], class ids in [0, num_classes), at most `max_detections` boxes.
    """
    h, w = frame_hw
    n = len(dets)
    if n > max_detections:
        return f"{n} boxes, more than max_detections {max_detections}"
    if n == 0:
        return None
    if not np.isfinite(dets.xyxy).all():
        return "non-finite box coordinates"
    if not np.isfinite(dets.confidence).all():
        return "non-finite confidences"
    if (dets.confidence < 0).any() or (dets.confidence > 1).any():
        return "confidence outside [0, 1]"
    if (dets.class_id < 0).any() or (dets.class_id >= num_classes).any():
        return f"class id outside [0, {num_classes})"
    x1, y1, x2, y2 = dets.xyxy.T
    if (x2 < x1).any() or (y2 < y1).any():
        return "inverted boxes"
    slack = 1.0
    if (
        (x1 < -slack).any()
        or (y1 < -slack).any()
        or (x2 > w + slack).any()
        or (y2 > h + slack).any()
    ):
        return "boxes outside the frame"
    return None


def check_raw_outputs(outputs: Sequence[np.ndarray]) -> str | None:
    """Return what is wrong with a network's raw outputs (NaN/inf, empty), or None."""
    if not outputs:
        return "no outputs"
    for i, out in enumerate(outputs):
        if out.size == 0:
            return f"output {i} is empty {list(out.shape)}"
        if not np.isfinite(out).all():
            return f"output {i} has NaN or inf values"
    return None


def check_latency(latencies_ms: Sequence[float], budget_ms: float) -> str | None:
    """Median per-frame latency (after the first, warm-up frame) within the budget, or why not."""
    if not latencies_ms:
        return None
    warm = list(latencies_ms[1:]) or list(latencies_ms)
    med = float(np.median(warm))
    if med > budget_ms:
        return f"median latency {med:.1f} ms exceeds the budget of {budget_ms:.1f} ms"
    return None


# ---------------------------------------------------------------------------------------------
# probation


@dataclass(frozen=True)
class Health:
    """Health over a window (from the pipeline's frame window).

    Attributes:
        frames: frames attempted, errors included.
        errors: frames whose inference raised.
        latency_p99_ms: p99 of per-frame latency, None without frames.
        detections_per_frame: mean detections per successful frame, None without frames.
    """

    frames: int
    errors: int
    latency_p99_ms: float | None
    detections_per_frame: float | None


@dataclass(frozen=True)
class ProbationLimits:
    """Thresholds a model on probation must meet (from OtaConfig)."""

    min_frames: int
    max_error_rate: float
    latency_budget_ms: float
    min_detection_ratio: float
    baseline_min_rate: float


def judge_probation(
    health: Health, baseline: Health | None, limits: ProbationLimits, final: bool
) -> str | None:
    """Return why probation fails, or None while it passes.

    Errors fail early (once `min_frames` frames were seen); latency and detection rate are
    judged on the whole window when `final` is True. A final window with fewer than
    `min_frames` frames fails: a model that was never exercised is not committed.
    """
    if health.frames >= max(limits.min_frames, 1):
        rate = health.errors / health.frames
        if rate > limits.max_error_rate:
            return (
                f"{health.errors} of {health.frames} frames failed "
                f"({rate:.0%} > {limits.max_error_rate:.0%})"
            )
    if not final:
        return None
    if health.frames < limits.min_frames:
        return f"only {health.frames} frames during probation (need {limits.min_frames})"
    p99 = health.latency_p99_ms
    if p99 is not None and math.isfinite(p99) and p99 > limits.latency_budget_ms:
        return f"latency p99 {p99:.1f} ms exceeds the budget of {limits.latency_budget_ms:.1f} ms"
    if (
        baseline is not None
        and baseline.detections_per_frame is not None
        and baseline.detections_per_frame >= limits.baseline_min_rate
    ):
        new = health.detections_per_frame or 0.0
        floor = limits.min_detection_ratio * baseline.detections_per_frame
        if new < floor:
            return (
                f"detection rate {new:.2f}/frame fell below {limits.min_detection_ratio:.0%} of "
                f"the previous model's {baseline.detections_per_frame:.2f}/frame"
            )
    return None
