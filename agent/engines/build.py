"""TensorRT engine builds on the device, cached under a key that says exactly what they fit.

An engine is only valid for the TensorRT version and GPU it was built with, and for the
ONNX model, precision, calibration set and builder options it was built from. The cache
key is a SHA-256 over all of these; a sidecar JSON next to each engine records them, and
any mismatch (or a truncated engine) means rebuild, never load.

Pure parts (no GPU, no disk): `cache_key`, `identity_for`, `decide`, `check_build_args`,
`precision_from_flags`, `calibration_digest`, `needs_build`, `platform_mismatches`.
I/O parts: `ensure_engine` (the entry point for the CLI, the daemon's first start and the
OTA `building` state), `build_serialized` (TensorRT builder + ONNX parser), file helpers.

INT8: `IInt8EntropyCalibrator2` over a folder of real frames, letterboxed exactly like
inference, with a calibration cache. TensorRT 10.1 deprecated this implicit quantisation in
favour of explicit Q/DQ models (e.g. NVIDIA TensorRT Model Optimizer); an ONNX model that
already has QuantizeLinear/DequantizeLinear nodes is built without a calibrator. See
docs/jetson.md.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.engines.base import EngineError
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.trt import TensorRTConfig, import_trt

log = structlog.get_logger(__name__)

RECORD_SCHEMA = "edge.engine/1"
CALIB_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ENGINE_SUFFIX = ".engine"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_CHUNK = 1 << 20

Precision = Literal["fp32", "fp16", "int8"]
ArtifactFormat = Literal["onnx", "engine"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildOptions(_Strict):
    """What to build: everything here except the calibration folder's path is in the key."""

    precision: Precision = Field("fp32", description="fp32, fp16, or int8 (+ fp16 fallback).")
    workspace_mib: int = Field(1024, gt=0, description="Builder workspace memory pool limit (MiB).")
    calib_images: Path | None = Field(
        None, description="Folder of calibration frames for int8 (its content is hashed)."
    )
    calib_max_images: int = Field(500, ge=1, description="Most calibration images used.")
    input_hw: tuple[int, int] | None = Field(
        None, description="Input (H, W) for ONNX models with dynamic spatial dimensions."
    )

    @classmethod
    def from_config(cls, config: TensorRTConfig) -> BuildOptions:
        """The build options a TensorRT engine config asks for."""
        return cls(
            precision=config.precision,
            workspace_mib=config.workspace_mib,
            calib_images=config.calib_images,
            calib_max_images=config.calib_max_images,
        )


class Platform(_Strict):
    """The TensorRT and GPU an engine is built for or loaded on."""

    tensorrt_version: str = Field(description="tensorrt.__version__, e.g. '10.3.0'.")
    gpu_name: str = Field(description="CUDA device name and SM count, e.g. 'Orin (8 SMs)'.")
    compute_capability: str = Field(description="Compute capability 'major.minor', e.g. '8.7'.")


class CacheIdentity(_Strict):
    """Everything an engine depends on; `cache_key` hashes exactly this."""

    onnx_sha256: str = Field(description="SHA-256 of the ONNX file.")
    tensorrt_version: str = Field(description="TensorRT version that built it.")
    gpu_name: str = Field(description="GPU it was built on (name and SM count).")
    compute_capability: str = Field(description="Compute capability of that GPU.")
    precision: Precision = Field(description="Build precision.")
    calibration_sha256: str | None = Field(
        None, description="Digest of the int8 calibration set (names and contents), if any."
    )
    workspace_mib: int = Field(description="Builder workspace limit (MiB).")
    calib_max_images: int | None = Field(None, description="Calibration image cap (int8 only).")
    input_hw: tuple[int, int] | None = Field(None, description="Input (H, W) for dynamic models.")


class EngineRecord(_Strict):
    """The sidecar JSON written next to every engine built here."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["edge.engine/1"] = Field(RECORD_SCHEMA, alias="schema")
    key: str = Field(pattern=r"^[0-9a-f]{64}$", description="cache_key(identity).")
    identity: CacheIdentity = Field(description="What the key covers.")
    engine_file: str = Field(description="Engine file name (in the same folder).")
    engine_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the engine file.")
    engine_length: int = Field(gt=0, description="Engine size in bytes.")
    onnx_file: str = Field(description="Name of the ONNX file it was built from.")
    onnx_metadata: dict[str, str] = Field(
        default_factory=dict, description="The ONNX model's metadata (Ultralytics names, imgsz...)."
    )
    explicit_quantization: bool = Field(False, description="The ONNX had Q/DQ nodes.")
    built_at: str = Field(description="Build end, UTC, RFC 3339.")
    build_seconds: float = Field(ge=0, description="Wall time of the build.")


class EngineRecordError(Exception):
    """A sidecar JSON is missing fields, malformed or of another schema."""


class BuildArgsError(EngineError):
    """`edge-agent engine build` arguments are invalid; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# --------------------------------------------------------------------------- pure logic


def cache_key(identity: CacheIdentity) -> str:
    """SHA-256 (hex) of the canonical JSON of `identity` (sorted keys, no spaces)."""
    canonical = json.dumps(identity.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
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
    if f.precision != "int8":
        if f.calib_dir is not None:
            problems.append("--calib-images is only used with --int8")
        return problems
    if f.calib_dir is None:
        if not f.onnx_has_qdq:
            problems.append(
                "--int8 needs --calib-images DIR (real frames from the camera) unless the ONNX "
                "model is already quantised with Q/DQ nodes"
            )
        return problems
    if not f.calib_dir_is_dir:
        problems.append(f"--calib-images {f.calib_dir}: not a directory")
    elif f.calib_image_count == 0:
        problems.append(
            f"--calib-images {f.calib_dir}: no images ({', '.join(CALIB_SUFFIXES)}) in it"
        )
    return problems


def calibration_digest(entries: Sequence[tuple[str, str]]) -> str:
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
    if suffix in (".engine", ".plan", ".trt"):
        return "engine"
    raise ValueError(f"{path}: unknown model format (expected .onnx or .engine)")


def needs_build(
    engine_config: OnnxRuntimeConfig | TensorRTConfig, artifact_format: ArtifactFormat
) -> bool:
    """Does the OTA `building` state (or first start) have to build a TensorRT engine? Pure.

    ONNX Runtime runs ONNX as is (no build, no TensorRT needed); TensorRT runs engines, so an
    ONNX artifact is built on the device and a prebuilt engine is not.

    Raises:
        EngineError: a TensorRT engine artifact with the onnxruntime backend (cannot run).
    """
    if isinstance(engine_config, OnnxRuntimeConfig):
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


# --------------------------------------------------------------------------- file helpers


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (OSError propagates)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_record(path: Path) -> EngineRecord:
    """Read and validate a sidecar JSON.

    Raises:
        EngineRecordError: unreadable, not JSON, or fails validation.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EngineRecordError(f"{path}: {exc}") from exc
    try:
        return EngineRecord.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise EngineRecordError(f"{path}: {problems}") from exc


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync, rename, fsync dir."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def calibration_images(folder: Path, max_images: int) -> list[Path]:
    """The first `max_images` image files of `folder`, sorted by name (not recursive)."""
    files = sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in CALIB_SUFFIXES
    )
    return files[:max_images]


def calibration_set_digest(files: Sequence[Path]) -> str:
    """`calibration_digest` of real files (names and contents)."""
    return calibration_digest([(p.name, file_sha256(p)) for p in files])


@dataclass(frozen=True)
class OnnxInfo:
    """What the builder needs from the ONNX file itself."""

    metadata: dict[str, str]
    has_qdq: bool
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # -1 = dynamic


def read_onnx_info(path: Path) -> OnnxInfo:
    """Metadata, Q/DQ presence and input shapes of an ONNX model (weights not loaded).

    Raises:
        EngineError: the `onnx` package is missing or the file is not a valid ONNX model.
    """
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:
        raise EngineError(f"the onnx package is needed to read {path}: {exc}") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise EngineError(f"{path} is not a valid ONNX model: {exc}") from exc
    initializers = {i.name for i in model.graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    return OnnxInfo(
        metadata={p.key: p.value for p in model.metadata_props},
        has_qdq=any(n.op_type in QDQ_OPS for n in model.graph.node),
        input_shapes=shapes,
    )


def gather_facts(model: Path, options: BuildOptions) -> BuildArgFacts:
    """Look at the files a build request names (I/O side of `check_build_args`)."""
    model = Path(model)
    exists = model.is_file()
    calib = options.calib_images
    is_dir = calib is not None and calib.is_dir()
    count = len(calibration_images(calib, options.calib_max_images)) if calib and is_dir else 0
    has_qdq = False
    if exists and options.precision == "int8" and calib is None and model.suffix.lower() == ".onnx":
        has_qdq = read_onnx_info(model).has_qdq
    return BuildArgFacts(
        model=model,
        model_exists=exists,
        precision=options.precision,
        workspace_mib=options.workspace_mib,
        calib_dir=calib,
        calib_dir_is_dir=is_dir,
        calib_image_count=count,
        onnx_has_qdq=has_qdq,
        calib_max_images=options.calib_max_images,
    )


def validate_build(model: Path, options: BuildOptions) -> None:
    """Raise BuildArgsError listing every problem with the request."""
    problems = check_build_args(gather_facts(model, options))
    if problems:
        raise BuildArgsError(problems)


@contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    """Exclusive lock on the cache folder: one build at a time (CLI and daemon alike)."""
    lock_path = Path(cache_dir) / ".build.lock"
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- TensorRT


def probe_platform(device: int = 0) -> Platform:
    """TensorRT version, GPU name (with SM count) and compute capability of `device`.

    Raises:
        EngineError: TensorRT/pycuda missing, or no such CUDA device.
    """
    trt, cuda = import_trt()
    try:
        cuda.init()
        dev = cuda.Device(device)
        major, minor = dev.compute_capability()
        sms = dev.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
        name = dev.name()
    except cuda.Error as exc:
        raise EngineError(f"cannot query CUDA device {device}: {exc}") from exc
    return Platform(
        tensorrt_version=str(trt.__version__),
        gpu_name=f"{name} ({sms} SMs)",
        compute_capability=f"{major}.{minor}",
    )


@dataclass(frozen=True)
class BuildJob:
    """One build: the inputs `build_serialized` needs."""

    onnx_path: Path
    options: BuildOptions
    input_hw: tuple[int, int] | None
    calib_files: tuple[Path, ...]
    calib_cache: Path | None
    explicit_quantization: bool
    device: int = 0


BuildFn = Callable[[BuildJob], bytes]


def build_serialized(job: BuildJob) -> bytes:
    """Parse the ONNX with TensorRT's parser and build a serialised engine (TensorRT 10).

    Runs in its own CUDA context on `job.device`. fp16 sets BuilderFlag.FP16; int8 sets
    INT8 and FP16, with an entropy calibrator over `job.calib_files` unless the model is
    explicitly quantised (Q/DQ).

    Raises:
        EngineError: parser errors (each listed), builder failure, calibration failure.
    """
    trt, cuda = import_trt()
    from agent.engines.trt import _trt_logger

    logger = _trt_logger(trt)
    try:
        cuda.init()
        ctx = cuda.Device(job.device).make_context()
    except cuda.Error as exc:
        raise EngineError(f"cannot create a CUDA context on device {job.device}: {exc}") from exc
    calibrator: Any = None
    try:
        builder = trt.Builder(logger)
        if builder is None:
            raise EngineError("TensorRT could not create a builder")
        network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(job.onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise EngineError(f"TensorRT cannot parse {job.onnx_path}: " + " | ".join(errors))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, job.options.workspace_mib << 20)
        if hasattr(trt, "IProgressMonitor"):
            config.progress_monitor = _progress_monitor(trt)
        profile = _input_profile(trt, builder, network, job.input_hw)
        if profile is not None:
            config.add_optimization_profile(profile)
        precision = job.options.precision
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if not job.explicit_quantization:
                shape = tuple(network.get_input(0).shape)
                if any(d < 0 for d in shape):
                    if job.input_hw is None:
                        raise EngineError("dynamic input needs --input-size for calibration")
                    shape = (1, shape[1], *job.input_hw)
                calibrator = _make_calibrator(trt, cuda, job.calib_files, shape, job.calib_cache)
                config.int8_calibrator = calibrator
                if profile is not None:
                    config.set_calibration_profile(profile)
        log.info(
            "tensorrt build started",
            onnx=str(job.onnx_path),
            precision=precision,
            workspace_mib=job.options.workspace_mib,
            calib_images=len(job.calib_files),
            explicit_quantization=job.explicit_quantization,
            tensorrt=trt.__version__,
        )
        serialized = builder.build_serialized_network(network, config)
        if calibrator is not None and calibrator.error is not None:
            raise EngineError(f"int8 calibration failed: {calibrator.error}")
        if serialized is None:
            raise EngineError(
                f"TensorRT failed to build {job.onnx_path} (see the tensorrt log lines); on an "
                "8 GB Orin Nano try a smaller --workspace and add swap"
            )
        return bytes(serialized)
    finally:
        if calibrator is not None:
            calibrator.free()
        ctx.pop()
        ctx.detach()


def _input_profile(trt: Any, builder: Any, network: Any, input_hw: tuple[int, int] | None) -> Any:
    """An optimisation profile pinning dynamic inputs to batch 1 and `input_hw`, or None."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if not any(d < 0 for inp in inputs for d in inp.shape):
        return None
    profile = builder.create_optimization_profile()
    for inp in inputs:
        shape = list(inp.shape)
        if len(shape) != 4:
            raise EngineError(f"input {inp.name} has shape {shape}; expected (N, 3, H, W)")
        if (shape[2] < 0 or shape[3] < 0) and input_hw is None:
            raise EngineError(
                f"input {inp.name} has dynamic size {shape} and the model has no 'imgsz' "
                "metadata: pass --input-size HxW"
            )
        fixed = (
            1,
            3 if shape[1] < 0 else shape[1],
            input_hw[0] if shape[2] < 0 and input_hw else shape[2],
            input_hw[1] if shape[3] < 0 and input_hw else shape[3],
        )
        profile.set_shape(inp.name, fixed, fixed, fixed)
    return profile


def _progress_monitor(trt: Any) -> Any:
    """A TensorRT IProgressMonitor that logs the builder's top-level phases."""

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                log.info("tensorrt build phase", phase=phase_name, steps=num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            return None

    return _Monitor()


def _make_calibrator(
    trt: Any, cuda: Any, files: Sequence[Path], shape: tuple[int, ...], cache: Path | None
) -> Any:
    """An IInt8EntropyCalibrator2 feeding letterboxed frames, one per batch (batch 1).

    Errors inside TensorRT's callbacks are recorded in `.error` (raising through TensorRT's
    C++ is not safe) and end calibration; `build_serialized` then raises them.
    """
    import cv2
    import numpy as np

    from agent.engines.yolo import Letterboxer

    letterbox = Letterboxer((int(shape[2]), int(shape[3])))
    nbytes = int(np.prod(shape)) * 4

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: str | None = None
            self._next = 0
            self._device = cuda.mem_alloc(nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.error is not None or self._next >= len(files):
                return None
            path = files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.error = f"cannot read calibration image {path}"
                return None
            tensor, _ = letterbox(image)
            try:
                cuda.memcpy_htod(self._device, np.ascontiguousarray(tensor, dtype=np.float32))
            except cuda.Error as exc:
                self.error = f"CUDA copy failed: {exc}"
                return None
            if self._next % max(1, len(files) // 10) == 0 or self._next == len(files):
                log.info("int8 calibration", images=self._next, of=len(files))
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            if cache is not None and cache.is_file():
                log.info("int8 calibration cache reused", path=str(cache))
                return cache.read_bytes()
            return None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                atomic_write(cache, bytes(data))

        def free(self) -> None:
            if self._device is not None:
                self._device.free()
                self._device = None

    return _Calibrator()


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class _Plan:
    """What ensure_engine/find_cached_engine computed for one request."""

    options: BuildOptions
    expected: CacheIdentity
    engine_path: Path
    info: OnnxInfo
    calib_files: tuple[Path, ...]
    calib_sha: str | None


def _plan(onnx_path: Path, options: BuildOptions, cache_dir: Path, here: Platform) -> _Plan:
    """Hash the inputs and work out the expected identity and cache slot."""
    onnx_sha = file_sha256(onnx_path)
    info = read_onnx_info(onnx_path)
    calib_files: tuple[Path, ...] = ()
    calib_sha: str | None = None
    if options.precision == "int8" and options.calib_images is not None and not info.has_qdq:
        try:
            calib_files = tuple(calibration_images(options.calib_images, options.calib_max_images))
            calib_sha = calibration_set_digest(calib_files)
        except OSError as exc:
            raise EngineError(
                f"calibration folder {options.calib_images} is unreadable ({exc}); its images "
                "are part of the int8 engine's cache key"
            ) from exc
    input_hw = options.input_hw
    if input_hw is None and any(d < 0 for s in info.input_shapes.values() for d in s[2:]):
        from agent.engines.model_loading import metadata_imgsz

        input_hw = metadata_imgsz(info.metadata)
    options = options.model_copy(update={"input_hw": input_hw})
    expected = identity_for(onnx_sha, here, options, calib_sha)
    engine_path = engine_path_for(cache_dir, onnx_path, onnx_sha, options.precision)
    return _Plan(options, expected, engine_path, info, calib_files, calib_sha)


def _decide_on_disk(expected: CacheIdentity, engine_path: Path) -> CacheDecision:
    """`decide` fed with the sidecar and engine file found on disk."""
    side = sidecar_path(engine_path)
    record: EngineRecord | EngineRecordError | None = None
    if side.exists():
        try:
            record = read_record(side)
        except EngineRecordError as exc:
            record = exc
    engine_sha = file_sha256(engine_path) if engine_path.is_file() else None
    return decide(expected, record, engine_sha)


def find_cached_engine(
    onnx_path: Path,
    options: BuildOptions,
    cache_dir: Path,
    *,
    device: int = 0,
    platform: Platform | None = None,
) -> Path:
    """The valid cached engine for `onnx_path`, or EngineError saying why there is none.

    Never builds: this is what a load (and so a hot swap) may call. Building happens in
    `ensure_engine` (OTA `building` state, first start, `edge-agent engine build`).
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineError(f"model file not found: {onnx_path}")
    here = platform if platform is not None else probe_platform(device)
    plan_ = _plan(onnx_path, options, Path(cache_dir), here)
    decision = _decide_on_disk(plan_.expected, plan_.engine_path)
    if decision.action is not Action.LOAD:
        flags = {"fp32": "", "fp16": " --fp16", "int8": " --int8 --calib-images DIR"}
        raise EngineError(
            f"no usable TensorRT engine for {onnx_path} in {cache_dir} ({decision.reason}); "
            f"build it first: edge-agent engine build {onnx_path}{flags[options.precision]} "
            f"--workspace {options.workspace_mib} --cache-dir {cache_dir}"
        )
    return plan_.engine_path


def ensure_engine(
    onnx_path: Path,
    options: BuildOptions,
    cache_dir: Path,
    *,
    device: int = 0,
    force: bool = False,
    platform: Platform | None = None,
    build_fn: BuildFn = build_serialized,
) -> Path:
    """Return the path of a valid engine for `onnx_path`, building it if needed.

    The OTA `building` state and the daemon's first start call this; so does
    `edge-agent engine build`. It never runs inside a hot swap: the swap loads the path
    returned here. Concurrent callers are serialised by a lock file in `cache_dir`.

    Args:
        onnx_path: the ONNX model.
        options: precision, workspace, calibration set.
        cache_dir: engine cache folder (created if missing).
        device: CUDA device ordinal.
        force: rebuild even on a cache hit.
        platform: the platform to build for; probed from TensorRT/pycuda when None.
        build_fn: the builder (TensorRT's, by default).

    Raises:
        BuildArgsError: invalid request; EngineError: TensorRT missing or the build failed.
    """
    onnx_path = Path(onnx_path)
    validate_build(onnx_path, options)
    here = platform if platform is not None else probe_platform(device)
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(f"cannot create engine cache folder {cache_dir}: {exc}") from exc
    p = _plan(onnx_path, options, cache_dir, here)
    options, expected, engine_path, info = p.options, p.expected, p.engine_path, p.info
    side = sidecar_path(engine_path)
    with _cache_lock(cache_dir):
        decision = _decide_on_disk(expected, engine_path)
        if decision.action is Action.LOAD and not force:
            log.info("engine cache hit", engine=str(engine_path))
            return engine_path
        log.info(
            "engine build needed",
            engine=str(engine_path),
            reason="--force" if decision.action is Action.LOAD else decision.reason,
        )
        calib_cache = None
        if p.calib_sha is not None:
            calib_cache = cache_dir / (
                f"{onnx_path.stem}-{expected.onnx_sha256[:12]}-calib-{p.calib_sha[:12]}"
                f"-trt{here.tensorrt_version}.cache"
            )
        job = BuildJob(
            onnx_path, options, options.input_hw, p.calib_files, calib_cache, info.has_qdq, device
        )
        side.unlink(missing_ok=True)  # a crash from here on leaves no sidecar: next time rebuilds
        started = time.monotonic()
        plan = build_fn(job)
        seconds = time.monotonic() - started
        if not plan:
            raise EngineError(f"the builder returned an empty engine for {onnx_path}")
        atomic_write(engine_path, plan)
        record = EngineRecord(
            key=cache_key(expected),
            identity=expected,
            engine_file=engine_path.name,
            engine_sha256=hashlib.sha256(plan).hexdigest(),
            engine_length=len(plan),
            onnx_file=onnx_path.name,
            onnx_metadata=info.metadata,
            explicit_quantization=info.has_qdq,
            built_at=_utc_now(),
            build_seconds=round(seconds, 3),
        )
        atomic_write(side, (record.model_dump_json(by_alias=True, indent=2) + "\n").encode())
        log.info(
            "engine built",
            engine=str(engine_path),
            seconds=round(seconds, 1),
            bytes=len(plan),
            precision=options.precision,
        )
        return engine_path


def _utc_now() -> str:
    """Now, UTC, RFC 3339 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def prepare_model(engine_config: OnnxRuntimeConfig | TensorRTConfig, model_path: Path) -> Path:
    """Make sure `model_path` can be loaded; return the file the engine will load.

    For the daemon's first start and the OTA `building` state: with TensorRT and an ONNX
    model it builds (or reuses) the engine in `engine_config.cache_dir`; with onnxruntime it
    touches nothing and needs no TensorRT.
    """
    fmt = artifact_format_of(model_path)
    if not needs_build(engine_config, fmt):
        return Path(model_path)
    if not isinstance(engine_config, TensorRTConfig):  # needs_build is only True for TensorRT
        raise EngineError(f"unexpected engine config {type(engine_config).__name__}")
    return ensure_engine(
        model_path,
        BuildOptions.from_config(engine_config),
        engine_config.cache_dir,
        device=engine_config.device,
    )
