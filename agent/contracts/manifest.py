"""The model manifest: what a model artifact is, independent of how it is signed or shipped.

The same model is used for `engines/demo/manifest.json`, the gateway's registry and the
OTA protocol (which wraps it in a signature envelope, see `agent.contracts.ota`).
Pure pydantic: reading files is the caller's job.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.contracts.gate import GateRecord
from agent.contracts.ids import SafeId
from agent.util.models import FrozenModel

MANIFEST_SCHEMA = "edge.manifest/1"

ModelKind = Literal["detector", "florence2"]
"""What a model is for: the YOLO detector, or the Florence-2 fallback (separate version lines)."""

DEFAULT_KIND: ModelKind = "detector"


class Compat(FrozenModel):
    """Where a prebuilt engine (format "engine") runs; checked by the device before download.

    A TensorRT engine runs only on the exact TensorRT version that built it (unless it was
    built with BuilderFlag.VERSION_COMPATIBLE) and should run only on the device model it was
    tuned on (an AGX Orin engine on an Orin Nano loads, but with tactics for 16 SMs on 8).
    So an engine's compat must name both `tensorrt` and `gpu_name`; the device refuses an
    engine whose compat does not (`engine_compat_problems`), with reason `incompatible`.
    The gateway's `models add` fills them from the engine's build record.
    """

    tensorrt: str | None = Field(None, pattern=r"^\d+(\.\d+){0,3}$")
    """Exact TensorRT version that built the engine, e.g. '10.3.0.30' (tensorrt.__version__ on the
    build device). Required for engines."""
    version_compatible: bool = False
    """The engine was built with BuilderFlag.VERSION_COMPATIBLE: it also runs on later TensorRT
    versions of the same major, not only on `tensorrt`."""
    gpu_name: str | None = Field(None, min_length=1, max_length=200)
    """Device model the engine was built on: CUDA device name and SM count as in its build record,
    e.g. 'Orin (8 SMs)' (AGX Orin: 'Orin (16 SMs)'). Required for engines."""
    min_tensorrt: str | None = Field(None, pattern=r"^\d+(\.\d+){0,3}$")
    """Lowest TensorRT version a prebuilt engine runs on, e.g. '10.3' (same major version required:
    plans never load across majors)."""
    gpu_arch: str | None = Field(None, pattern=r"^sm_\d{2,3}[a-z]?$")
    """GPU compute capability a prebuilt engine was built for, e.g. 'sm_87'."""


def _version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.26' -> (10, 3, 0, 26); stops at the first non-numeric part: '10.3.0b1' -> (10, 3)."""
    parts: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def gpu_arch_of(compute_capability: str) -> str:
    """Compute capability '8.7' -> 'sm_87' (the spelling of `Compat.gpu_arch`)."""
    return "sm_" + compute_capability.replace(".", "")


def compat_problems(
    compat: Compat, *, tensorrt_version: str | None, compute_capability: str | None
) -> list[str]:
    """Why a prebuilt engine with `compat` must not run on this platform (empty: it may).

    `tensorrt_version` and `compute_capability` describe the device (None: unknown, e.g. no
    TensorRT or GPU here); a requirement that cannot be checked is a problem, never a pass.
    """
    problems: list[str] = []
    if compat.min_tensorrt is not None:
        if tensorrt_version is None:
            problems.append(f"needs TensorRT >= {compat.min_tensorrt}, none here")
        else:
            need, have = _version_tuple(compat.min_tensorrt), _version_tuple(tensorrt_version)
            width = max(len(need), len(have))
            if have[:1] != need[:1]:  # plans never load across TensorRT major versions
                problems.append(
                    f"built for TensorRT {need[0]}.x (>= {compat.min_tensorrt}), "
                    f"here {tensorrt_version}"
                )
            elif have + (0,) * (width - len(have)) < need + (0,) * (width - len(need)):
                problems.append(f"needs TensorRT >= {compat.min_tensorrt}, here {tensorrt_version}")
    if compat.gpu_arch is not None:
        if compute_capability is None:
            problems.append(f"built for {compat.gpu_arch}, GPU unknown here")
        else:
            here = gpu_arch_of(compute_capability)
            if compat.gpu_arch.rstrip("abcdefghijklmnopqrstuvwxyz") != here:
                problems.append(f"built for {compat.gpu_arch}, GPU here is {here}")
    return problems


def _same_version(a: str, b: str) -> bool:
    """'10.3' and '10.3.0.0' are the same version; '10.3' and '10.3.0.30' are not."""
    x, y = _version_tuple(a), _version_tuple(b)
    width = max(len(x), len(y))
    return x + (0,) * (width - len(x)) == y + (0,) * (width - len(y))


def _tensorrt_problems(compat: Compat, tensorrt_version: str | None) -> list[str]:
    """The exact-version rule of `engine_compat_problems`."""
    if compat.tensorrt is None:
        return [
            "compat names no TensorRT version (compat.tensorrt): an engine runs only on "
            "the exact version that built it"
        ]
    if tensorrt_version is None:
        return [f"built with TensorRT {compat.tensorrt}, none here"]
    if compat.version_compatible:  # later versions of the same major load it too
        floor = Compat(min_tensorrt=compat.tensorrt)
        return compat_problems(floor, tensorrt_version=tensorrt_version, compute_capability=None)
    if not _same_version(compat.tensorrt, tensorrt_version):
        return [
            f"built with TensorRT {compat.tensorrt}, here {tensorrt_version} (engines run only "
            "on the exact version that built them)"
        ]
    return []


def _device_problems(compat: Compat, gpu_name: str | None) -> list[str]:
    """The device-model rule of `engine_compat_problems`."""
    if compat.gpu_name is None:
        return ["compat names no device model (compat.gpu_name, e.g. 'Orin (8 SMs)')"]
    if gpu_name is None:
        return [f"built on {compat.gpu_name}, GPU unknown here"]
    if compat.gpu_name != gpu_name:
        return [f"built on {compat.gpu_name}, GPU here is {gpu_name}"]
    return []


def engine_compat_problems(
    compat: Compat,
    *,
    tensorrt_version: str | None,
    compute_capability: str | None,
    gpu_name: str | None,
) -> list[str]:
    """Why a prebuilt engine with `compat` must not run on this device (empty: it may).

    On top of `compat_problems`: the compat must name the exact TensorRT version (a later
    version of the same major is accepted only when `version_compatible`) and the device
    model (`gpu_name`), and both must match this device. Unknown is never a pass.
    """
    return (
        _tensorrt_problems(compat, tensorrt_version)
        + _device_problems(compat, gpu_name)
        + compat_problems(
            compat, tensorrt_version=tensorrt_version, compute_capability=compute_capability
        )
    )


class Manifest(FrozenModel):
    """Identity and interface of one model artifact."""

    schema_: Literal["edge.manifest/1"] = Field(MANIFEST_SCHEMA, alias="schema")
    """Manifest schema id and version."""
    name: SafeId
    """Model name; versions are monotonic per name."""
    version: int = Field(ge=1)
    """Integer version, monotonic per name."""
    format: Literal["onnx", "engine", "tar"]
    """Artifact format: `onnx`, `engine` (TensorRT plan), or `tar` (a multi-file model such as a
    Florence-2 directory, packed as one uncompressed tar: `edge-agent florence pack`)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the artifact bytes."""
    length: int = Field(gt=0)
    """Artifact size in bytes."""
    input_size: tuple[int, int]
    """Network input (height, width) in pixels."""
    class_names: list[str] = Field(min_length=1)
    """Class index -> label."""
    compat: Compat = Field(default_factory=Compat)
    """Where a prebuilt engine runs."""
    created: str
    """Creation time, UTC, RFC 3339."""
    expires: str | None = None
    """After this time (UTC, RFC 3339) it is refused."""
    # The fields below are left out of the JSON form at their defaults, so a manifest signed
    # before they existed keeps its canonical bytes (and its signature verifies).
    kind: ModelKind = Field(DEFAULT_KIND, exclude_if=lambda v: v == DEFAULT_KIND)
    """What the model is for: `detector` (YOLO) or `florence2` (the fallback); each kind has its own
    generation line."""
    generation: int = Field(0, ge=0, exclude_if=lambda v: v == 0)
    """Release generation, monotonic across all names of one kind: a device accepts a model under
    another name only with a generation above the one it runs (unless the name is pinned in
    `trust.allowed_models`)."""
    gate: GateRecord | None = Field(None, exclude_if=lambda v: v is None)
    """Gate-set figures signed by `models sign --gate-against`: this model's and those of the model
    it replaces, with the gate set's sha256 (docs/flywheel.md)."""
