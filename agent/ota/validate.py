"""Pure checks of OTA commands, new models and probation health. No disk, no network.

The manager calls these in the protocol's order and persists what they decide:

1. `parse_command` (payload size, JSON, types, path tricks) - in `agent.ota.protocol`
2. command signature, then device id                         - `check_authentic`
3. redelivery of the latest command (idempotent) or a replay  - `classify_delivery`
4. busy                                                        - the manager
5. command expiry, then sequence                              - `check_fresh`
   (from here on the command consumes its sequence number)
6. manifest signature and expiry                               - `agent.ota.signing`
7. version monotonic per name, rollback target kept, compat    - `check_target`
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.manifest import Manifest, engine_compat_problems
from agent.ota.protocol import (
    OtaAction,
    OtaCommand,
    OtaRejectedError,
    Reason,
    command_digest,
)
from agent.ota.signing import (
    PublicKeyLike,
    check_command_expiry,
    verify_command_signature,
    verify_manifest,
)
from agent.types import Detections

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
        Reason.INCOMPATIBLE,
        Reason.OVERSIZED,
    }
)
"""Rejections raised after the sequence check: the command is recorded as handled."""


class Ledger(BaseModel):
    """What the device remembers about commands (persisted; survives restarts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    last_sequence: int = Field(0, ge=0, description="Highest sequence accepted so far.")
    last_command_id: str | None = Field(None, description="Id of the latest handled command.")
    last_digest: str | None = Field(None, description="command_digest of that command.")
    seen: list[str] = Field(
        default_factory=list, description=f"Ids of the last {SEEN_LIMIT} handled commands."
    )
    max_version: dict[str, int] = Field(
        default_factory=dict, description="Highest committed version per model name."
    )

    def record(self, command: OtaCommand) -> Ledger:
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

    def committed(self, name: str, version: int) -> Ledger:
        """Return the ledger after `name` v`version` was committed."""
        mv = dict(self.max_version)
        mv[name] = max(mv.get(name, 0), version)
        return self.model_copy(update={"max_version": mv})


@dataclass(frozen=True)
class ModelView:
    """The models the device runs and keeps, as the version checks see them.

    Attributes:
        active: (name, version, sha256) of the running model, or None if unknown.
        previous: (name, version, sha256) of the model kept for rollback, or None.
    """

    active: tuple[str, int, str] | None
    previous: tuple[str, int, str] | None


class Delivery(str, Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # the latest command delivered again: re-publish its state


def check_authentic(
    command: OtaCommand, gateway_keys: Mapping[str, PublicKeyLike], device: str
) -> None:
    """Command signature by a trusted gateway key, then the device id."""
    verify_command_signature(command, gateway_keys)
    if command.device != device:
        raise OtaRejectedError(
            Reason.WRONG_DEVICE, f"command is for device {command.device!r}, this is {device!r}"
        )


def classify_delivery(command: OtaCommand, ledger: Ledger) -> Delivery:
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


def check_fresh(command: OtaCommand, ledger: Ledger, now: datetime | None = None) -> None:
    """Command expiry, then its sequence must exceed the last accepted one."""
    check_command_expiry(command, now)
    if command.sequence <= ledger.last_sequence:
        raise OtaRejectedError(
            Reason.OLD_SEQUENCE,
            f"sequence {command.sequence} is not above the last accepted {ledger.last_sequence}",
        )


def check_target(
    command: OtaCommand,
    manifest: Manifest,
    ledger: Ledger,
    models: ModelView,
    runnable_formats: frozenset[str],
    max_artifact_bytes: int,
    platform: Platform | None = None,
) -> None:
    """Version monotonic per name (or a rollback to the kept previous), format, compat, size.

    `platform` is this device's TensorRT and GPU (None without TensorRT); a prebuilt engine's
    `compat` must hold on it.
    """
    if command.action is OtaAction.ROLLBACK:
        want = (manifest.name, manifest.version, manifest.sha256)
        if models.previous is None or models.previous != want:
            kept = (
                "nothing"
                if models.previous is None
                else f"{models.previous[0]} v{models.previous[1]}"
            )
            raise OtaRejectedError(
                Reason.ROLLBACK_UNAVAILABLE,
                f"rollback target {manifest.name} v{manifest.version} is not the kept previous "
                f"model ({kept})",
            )
    else:
        floor = ledger.max_version.get(manifest.name, 0)
        if models.active is not None and models.active[0] == manifest.name:
            floor = max(floor, models.active[1])
        if manifest.version <= floor:
            raise OtaRejectedError(
                Reason.LOWER_VERSION,
                f"{manifest.name} v{manifest.version} is not above v{floor}",
            )
        if manifest.length > max_artifact_bytes:
            raise OtaRejectedError(
                Reason.OVERSIZED,
                f"artifact of {manifest.length} bytes exceeds the limit of {max_artifact_bytes}",
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
    check_target(command, manifest, ledger, models, runnable_formats, max_artifact_bytes, platform)
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
