"""The engine cache's records and decisions: what an engine was built from and for, and
whether a cached one may be loaded. Pure: no GPU, no TensorRT, no disk.

An engine is only valid for the TensorRT version and GPU it was built with, and for the
ONNX model, precision, calibration set and builder options it was built from. The cache
key is a SHA-256 over all of these; a sidecar JSON (`EngineRecord`) next to each engine
records them, and any mismatch (or a truncated engine) means rebuild, never load.

The I/O around these (hashing files, reading the ONNX, the lock, the build in a child
process) is in `agent.engines.build`; the TensorRT builder in `agent.engines.trt_builder`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, ValidationError

from agent.engines.base import EngineError
from agent.util.models import FrozenModel
from agent.util.validation import format_validation_error

if TYPE_CHECKING:
    from agent.engines.trt import TensorRTConfig

RECORD_SCHEMA = "edge.engine/1"
CALIB_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ENGINE_SUFFIX = ".engine"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")

Precision = Literal["fp32", "fp16", "int8"]
ArtifactFormat = Literal["onnx", "engine"]


CONFIGURED = frozenset(
    {"precision", "workspace_mib", "calib_images", "calib_max_images", "max_batch"}
)
"""The `BuildOptions` that come from the engine's config (`model.engine` of type tensorrt)."""


class BuildOptions(FrozenModel):
    """What to build: everything here except the calibration folder's path is in the key."""

    precision: Precision = "fp32"
    """fp32, fp16, or int8 (+ fp16 fallback)."""
    workspace_mib: int = Field(1024, gt=0)
    """Builder workspace memory pool limit (MiB)."""
    calib_images: Path | None = None
    """Folder of calibration frames for int8 (its content is hashed)."""
    calib_max_images: int = Field(500, ge=1)
    """Most calibration images used."""
    input_hw: tuple[int, int] | None = None
    """Input (H, W) for ONNX models with dynamic spatial dimensions."""
    max_batch: int = Field(1, ge=1, le=64)
    """Largest batch of the optimisation profile (1..max_batch) of a model with a dynamic batch
    axis."""

    @classmethod
    def from_config(cls, config: TensorRTConfig) -> BuildOptions:
        """The build options a TensorRT engine config asks for: the `CONFIGURED` fields, named
        alike in both (`input_hw` is not configured: it stays None). Named, not matched by name,
        so a field added to the config later cannot slip into the cache key unseen."""
        return cls.model_validate(config.model_dump(include=CONFIGURED))


class Platform(FrozenModel):
    """The TensorRT and GPU an engine is built for or loaded on."""

    tensorrt_version: str
    """tensorrt.__version__, e.g. '10.3.0'."""
    gpu_name: str
    """CUDA device name and SM count, e.g. 'Orin (8 SMs)': the device model (an AGX Orin has 16 SMs,
    an Orin Nano 8 GB 8)."""
    compute_capability: str
    """Compute capability 'major.minor', e.g. '8.7'."""


class CacheIdentity(FrozenModel):
    """Everything an engine depends on; `cache_key` hashes exactly this."""

    onnx_sha256: str
    """SHA-256 of the ONNX file."""
    tensorrt_version: str
    """TensorRT version that built it."""
    gpu_name: str
    """GPU it was built on (name and SM count)."""
    compute_capability: str
    """Compute capability of that GPU."""
    precision: Precision
    """Build precision."""
    calibration_sha256: str | None = None
    """Digest of the int8 calibration set (names and contents), if any."""
    workspace_mib: int
    """Builder workspace limit (MiB)."""
    calib_max_images: int | None = None
    """Calibration image cap (int8 only)."""
    input_hw: tuple[int, int] | None = None
    """Input (H, W) for dynamic models."""
    max_batch: int | None = None
    """Largest batch of the optimisation profile when above 1; None: batch 1 (left out of the key,
    so engines built before batching keep theirs)."""


class EngineRecord(FrozenModel):
    """The sidecar JSON written next to every engine built here (its build record)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["edge.engine/1"] = Field(RECORD_SCHEMA, alias="schema")
    """Record schema id and version."""
    key: str = Field(pattern=r"^[0-9a-f]{64}$")
    """cache_key(identity)."""
    identity: CacheIdentity
    """What the key covers."""
    engine_file: str
    """Engine file name (in the same folder)."""
    engine_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the engine file."""
    engine_length: int = Field(gt=0)
    """Engine size in bytes."""
    onnx_file: str
    """Name of the ONNX file it was built from."""
    onnx_metadata: dict[str, str] = Field(default_factory=dict)
    """The ONNX model's metadata (Ultralytics names, imgsz...)."""
    explicit_quantization: bool = False
    """The ONNX had Q/DQ nodes."""
    version_compatible: bool = False
    """Built with BuilderFlag.VERSION_COMPATIBLE (runs on later TensorRT of the same major). Engines
    built here are not: they run only on `identity.tensorrt_version`."""
    built_at: str
    """Build end, UTC, RFC 3339."""
    build_seconds: float = Field(ge=0)
    """Wall time of the build."""


class BuildJob(FrozenModel):
    """One build: what the TensorRT builder needs (sent to the builder process as JSON)."""

    onnx_path: Path
    """The ONNX model to build from."""
    options: BuildOptions
    """Precision, workspace, calibration set."""
    input_hw: tuple[int, int] | None = None
    """(H, W) for dynamic inputs."""
    calib_files: tuple[Path, ...] = ()
    """int8 calibration images, in order."""
    calib_cache: Path | None = None
    """int8 calibration cache file."""
    explicit_quantization: bool = False
    """The ONNX has Q/DQ nodes."""
    device: int = Field(0, ge=0)
    """CUDA device ordinal."""


class EngineRecordError(Exception):
    """A sidecar JSON is missing fields, malformed or of another schema."""


class BuildArgsError(EngineError):
    """`edge-agent engine build` arguments are invalid; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_record(text: str, origin: str) -> EngineRecord:
    """Parse and validate a sidecar JSON's text; `origin` names it in errors.

    Raises:
        EngineRecordError: not JSON, or fails validation (every problem listed).
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EngineRecordError(f"{origin}: {exc}") from exc
    try:
        return EngineRecord.model_validate(data)
    except ValidationError as exc:
        raise EngineRecordError(f"{origin}: {format_validation_error(exc)}") from exc


def cache_key(identity: CacheIdentity) -> str:
    """SHA-256 (hex) of the canonical JSON of `identity` (sorted keys, no spaces).

    `max_batch` is left out when None (batch 1), so keys of earlier engines still match."""
    data = identity.model_dump(mode="json")
    if data.get("max_batch") is None:
        data.pop("max_batch", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def identity_for(
    onnx_sha256: str,
    platform: Platform,
    options: BuildOptions,
    calibration_sha256: str | None,
) -> CacheIdentity:
    """The identity of the engine `options` would build from that ONNX on that platform."""
    int8 = options.precision == "int8"
    return CacheIdentity(
        onnx_sha256=onnx_sha256,
        tensorrt_version=platform.tensorrt_version,
        gpu_name=platform.gpu_name,
        compute_capability=platform.compute_capability,
        precision=options.precision,
        calibration_sha256=calibration_sha256 if int8 else None,
        workspace_mib=options.workspace_mib,
        calib_max_images=options.calib_max_images if int8 and calibration_sha256 else None,
        input_hw=options.input_hw,
        max_batch=options.max_batch if options.max_batch > 1 else None,
    )


def identity_differences(expected: CacheIdentity, recorded: CacheIdentity) -> list[str]:
    """Human-readable 'field: recorded -> expected' for every field that differs."""
    want, got = expected.model_dump(mode="json"), recorded.model_dump(mode="json")
    return [f"{k}: {got[k]!r} -> {want[k]!r}" for k in want if want[k] != got[k]]


def platform_mismatches(recorded: CacheIdentity, here: Platform) -> list[str]:
    """Why an engine built for `recorded` must not be loaded on `here` (empty: it may)."""
    pairs = (
        ("TensorRT", recorded.tensorrt_version, here.tensorrt_version),
        ("GPU", recorded.gpu_name, here.gpu_name),
        ("compute capability", recorded.compute_capability, here.compute_capability),
    )
    return [f"{what} {built} here {now}" for what, built, now in pairs if built != now]


class Action(enum.Enum):
    """What to do with the cache entry."""

    LOAD = "load"
    BUILD = "build"


@dataclass(frozen=True)
class CacheDecision:
    """`action` and the reason, for the log and the CLI."""

    action: Action
    reason: str


def decide(
    expected: CacheIdentity,
    record: EngineRecord | EngineRecordError | None,
    engine_sha256: str | None,
) -> CacheDecision:
    """Load the cached engine only if its sidecar matches `expected` and the file is intact.

    Args:
        expected: identity of the engine wanted now.
        record: the parsed sidecar, the error reading it, or None when there is none.
        engine_sha256: SHA-256 of the engine file, or None when the file is missing.

    Returns:
        LOAD with reason "cache hit", or BUILD with what was wrong. Any doubt means BUILD.
    """
    if record is None:
        return CacheDecision(Action.BUILD, "no cached engine (no sidecar)")
    if isinstance(record, EngineRecordError):
        return CacheDecision(Action.BUILD, f"sidecar unreadable: {record}")
    diffs = identity_differences(expected, record.identity)
    if diffs:
        return CacheDecision(Action.BUILD, "cache key mismatch: " + "; ".join(diffs))
    if record.key != cache_key(expected):
        return CacheDecision(Action.BUILD, "sidecar key does not match its identity (edited?)")
    if engine_sha256 is None:
        return CacheDecision(Action.BUILD, "engine file missing")
    if engine_sha256 != record.engine_sha256:
        return CacheDecision(
            Action.BUILD, "engine file does not match its sidecar sha256 (truncated?)"
        )
    return CacheDecision(Action.LOAD, "cache hit")


def precision_from_flags(fp16: bool, int8: bool) -> Precision:
    """CLI flags -> precision: --int8 wins (it keeps fp16 for layers without int8 kernels)."""
    if int8:
        return "int8"
    return "fp16" if fp16 else "fp32"


@dataclass(frozen=True)
class BuildArgFacts:
    """What `check_build_args` needs to know about the files, gathered by `gather_facts`."""

    model: Path
    model_exists: bool
    precision: Precision
    workspace_mib: int
    calib_dir: Path | None
    calib_dir_is_dir: bool = False
    calib_image_count: int = 0
    onnx_has_qdq: bool = False
    calib_max_images: int = 1


def _calibration_problems(f: BuildArgFacts) -> list[str]:
    """The int8 half of `check_build_args`: a usable calibration set, or a Q/DQ model."""
    if f.calib_dir is None:
        if f.onnx_has_qdq:
            return []
        return [
            "--int8 needs --calib-images DIR (real frames from the camera) unless the ONNX "
            "model is already quantised with Q/DQ nodes"
        ]
    if not f.calib_dir_is_dir:
        return [f"--calib-images {f.calib_dir}: not a directory"]
    if f.calib_image_count == 0:
        return [f"--calib-images {f.calib_dir}: no images ({', '.join(CALIB_SUFFIXES)}) in it"]
    return []


def check_build_args(f: BuildArgFacts) -> list[str]:
    """Every problem with a build request (empty list: fine). Pure.

    Rules: the model exists and is .onnx; workspace > 0; int8 needs a folder with at least
    one jpg/png/bmp frame unless the model is already Q/DQ-quantised; a calibration folder
    is only accepted with int8.
    """
    problems: list[str] = []
    if f.model.suffix.lower() != ".onnx":
        problems.append(f"{f.model}: expected an ONNX model (.onnx)")
    if not f.model_exists:
        problems.append(f"{f.model}: file not found")
    if f.workspace_mib <= 0:
        problems.append(f"--workspace must be > 0 MiB, got {f.workspace_mib}")
    if f.calib_max_images < 1:
        problems.append(f"--calib-max-images must be >= 1, got {f.calib_max_images}")
    if f.precision == "int8":
        return problems + _calibration_problems(f)
    if f.calib_dir is not None:
        problems.append("--calib-images is only used with --int8")
    return problems


def calibration_digest(entries: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """SHA-256 over (file name, file sha256) pairs, order-independent. Pure.

    Renaming, adding, removing or changing any calibration image changes the digest.
    """
    h = hashlib.sha256()
    for name, sha in sorted(entries):
        h.update(f"{name}\0{sha}\n".encode())
    return h.hexdigest()


def artifact_format_of(path: Path) -> ArtifactFormat:
    """'onnx' for .onnx files, 'engine' for .engine/.plan/.trt; ValueError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    raise ValueError(f"{path}: unknown model format (expected .onnx or .engine)")


def build_needed(engine_type: str, artifact_format: ArtifactFormat) -> bool:
    """Does the OTA `building` state (or first start) have to build a TensorRT engine? Pure.

    ONNX Runtime runs ONNX as is (no build, no TensorRT needed); TensorRT runs engines, so an
    ONNX artifact is built on the device and a prebuilt engine is not.

    Args:
        engine_type: the engine config's `type` ("onnxruntime" or "tensorrt").
        artifact_format: the model file's format.

    Raises:
        EngineError: a TensorRT engine artifact with the onnxruntime backend (cannot run).
    """
    if engine_type == "onnxruntime":
        if artifact_format == "engine":
            raise EngineError("a TensorRT engine artifact cannot run on the onnxruntime backend")
        return False
    return artifact_format == "onnx"


def engine_path_for(
    cache_dir: Path, onnx_path: Path, onnx_sha256: str, precision: Precision
) -> Path:
    """Cache slot of an ONNX model at a precision: `<stem>-<sha[:12]>-<precision>.engine`.

    One slot per (model, precision): a TensorRT or GPU change rebuilds into the same slot
    instead of growing the cache.
    """
    return Path(cache_dir) / f"{Path(onnx_path).stem}-{onnx_sha256[:12]}-{precision}{ENGINE_SUFFIX}"


def sidecar_path(engine_path: Path) -> Path:
    """`model.engine` -> `model.engine.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def uses_calibration_profile(tensorrt_version: str) -> bool:
    """Whether the int8 calibrator needs `IBuilderConfig.set_calibration_profile`. Pure.

    TensorRT 10 deprecated it (implicit quantisation is deprecated as a whole) and setting it
    there raises internal errors for dynamic-shape models; Ultralytics skips it on 10 too. It
    was needed on 8.x, which this project does not support, so in practice: never.
    """
    major = tensorrt_version.split(".", 1)[0]
    return major.isdigit() and int(major) < 10
