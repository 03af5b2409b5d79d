"""TensorRT engine builds on the device: look in the cache, build on a miss, record the build.

The records and decisions are pure and live in `agent.engines.engine_cache`; the TensorRT
builder and calibrator in `agent.engines.trt_builder`. This module does the I/O between
them: hashing the ONNX and calibration files, reading the ONNX, the cache lock, running the
builder in a child process (`build_in_child`) and writing the engine and its build record.

Entry points: `ensure_engine` (the CLI, the daemon's first start and the OTA `building`
state), `find_cached_engine` (a load: never builds), `prepare_model`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from agent.engines.base import EngineError
from agent.engines.engine_cache import (
    CALIB_SUFFIXES,
    QDQ_OPS,
    Action,
    BuildArgFacts,
    BuildArgsError,
    BuildJob,
    BuildOptions,
    CacheDecision,
    CacheIdentity,
    EngineRecord,
    EngineRecordError,
    Platform,
    artifact_format_of,
    build_needed,
    cache_key,
    calibration_digest,
    check_build_args,
    decide,
    engine_path_for,
    identity_for,
    parse_record,
    sidecar_path,
)
from agent.engines.trt_runtime import probe_platform
from agent.util.files import atomic_write, file_sha256

if TYPE_CHECKING:
    from agent.engines.trt import TensorRTConfig

log = structlog.get_logger(__name__)

BuildFn = Callable[[BuildJob], bytes]
BUILDER_MODULE = "agent.engines.trt_builder"
ENGINE_FILE_MODE = 0o644  # the daemon's user reads engines built by `sudo edge-agent engine build`


class EngineSettings(Protocol):
    """What `prepare_model` needs of an engine config (OnnxRuntimeConfig / TensorRTConfig)."""

    @property
    def type(self) -> str: ...


# --------------------------------------------------------------------------- files


def read_record(path: Path) -> EngineRecord:
    """Read and validate a sidecar JSON.

    Raises:
        EngineRecordError: unreadable, not JSON, or fails validation.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineRecordError(f"{path}: {exc}") from exc
    return parse_record(text, str(path))


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


# --------------------------------------------------------------------------- the builder process


def _exit_description(code: int) -> str:
    """'exit code 3' or 'signal SIGSEGV' for a child's return code."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def build_in_child(job: BuildJob, *, module: str = BUILDER_MODULE) -> bytes:
    """Build `job` in a child process (`python -m module JOB PLAN RESULT`); the plan bytes.

    The builder's GPU and host memory go back to the system when the child exits, and a
    builder crash (out of memory, a segfault in TensorRT) ends the child, not this process.
    The child inherits stdout/stderr, so its log lines reach the same journal.

    Raises:
        EngineError: the builder's own error message, or how the child died.
    """
    with tempfile.TemporaryDirectory(prefix="edge-engine-build-") as tmp:
        job_file, plan_file, result_file = (Path(tmp) / n for n in ("job.json", "plan", "result"))
        job_file.write_text(job.model_dump_json(), encoding="utf-8")
        argv = [sys.executable, "-m", module, str(job_file), str(plan_file), str(result_file)]
        log.info("engine builder process started", onnx=str(job.onnx_path), module=module)
        code = subprocess.run(argv, check=False).returncode
        if code == 0 and plan_file.is_file():
            return plan_file.read_bytes()
        if result_file.is_file():
            message = json.loads(result_file.read_text(encoding="utf-8")).get("error", "")
            raise EngineError(
                str(message) or f"the engine builder failed ({_exit_description(code)})"
            )
        raise EngineError(
            f"the engine builder process for {job.onnx_path} died ({_exit_description(code)}) "
            "without a result; the agent itself is unaffected. On an 8 GB Orin Nano try a "
            "smaller --workspace and add swap"
        )


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


def _calibration_set(options: BuildOptions, info: OnnxInfo) -> tuple[tuple[Path, ...], str | None]:
    """The int8 calibration files and their digest (none unless int8 without Q/DQ)."""
    if options.precision != "int8" or options.calib_images is None or info.has_qdq:
        return (), None
    try:
        files = tuple(calibration_images(options.calib_images, options.calib_max_images))
        return files, calibration_set_digest(files)
    except OSError as exc:
        raise EngineError(
            f"calibration folder {options.calib_images} is unreadable ({exc}); its images "
            "are part of the int8 engine's cache key"
        ) from exc


def _plan(onnx_path: Path, options: BuildOptions, cache_dir: Path, here: Platform) -> _Plan:
    """Hash the inputs and work out the expected identity and cache slot."""
    onnx_sha = file_sha256(onnx_path)
    info = read_onnx_info(onnx_path)
    calib_files, calib_sha = _calibration_set(options, info)
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


def _job_for(p: _Plan, onnx_path: Path, cache_dir: Path, here: Platform, device: int) -> BuildJob:
    """The builder's job for a plan, with its int8 calibration cache file if any."""
    calib_cache = None
    if p.calib_sha is not None:
        calib_cache = cache_dir / (
            f"{onnx_path.stem}-{p.expected.onnx_sha256[:12]}-calib-{p.calib_sha[:12]}"
            f"-trt{here.tensorrt_version}.cache"
        )
    return BuildJob(
        onnx_path=onnx_path,
        options=p.options,
        input_hw=p.options.input_hw,
        calib_files=p.calib_files,
        calib_cache=calib_cache,
        explicit_quantization=p.info.has_qdq,
        device=device,
    )


def _write_build(p: _Plan, onnx_path: Path, plan: bytes, seconds: float) -> None:
    """Write the engine, then its build record (a crash in between leaves no record)."""
    atomic_write(p.engine_path, plan, mode=ENGINE_FILE_MODE)
    record = EngineRecord(
        key=cache_key(p.expected),
        identity=p.expected,
        engine_file=p.engine_path.name,
        engine_sha256=hashlib.sha256(plan).hexdigest(),
        engine_length=len(plan),
        onnx_file=onnx_path.name,
        onnx_metadata=p.info.metadata,
        explicit_quantization=p.info.has_qdq,
        version_compatible=False,  # BuilderFlag.VERSION_COMPATIBLE is not set
        built_at=_utc_now(),
        build_seconds=round(seconds, 3),
    )
    text = record.model_dump_json(by_alias=True, indent=2) + "\n"
    atomic_write(sidecar_path(p.engine_path), text.encode(), mode=ENGINE_FILE_MODE)


def _build_and_record(p: _Plan, job: BuildJob, build_fn: BuildFn) -> None:
    """Run the builder for `job` and write the engine and its build record (lock held)."""
    sidecar_path(p.engine_path).unlink(missing_ok=True)  # a crash from here on: rebuild
    started = time.monotonic()
    plan = build_fn(job)
    seconds = time.monotonic() - started
    if not plan:
        raise EngineError(f"the builder returned an empty engine for {job.onnx_path}")
    _write_build(p, job.onnx_path, plan, seconds)
    log.info(
        "engine built",
        engine=str(p.engine_path),
        seconds=round(seconds, 1),
        bytes=len(plan),
        precision=p.options.precision,
    )


def ensure_engine(
    onnx_path: Path,
    options: BuildOptions,
    cache_dir: Path,
    *,
    device: int = 0,
    force: bool = False,
    platform: Platform | None = None,
    build_fn: BuildFn = build_in_child,
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
        build_fn: the builder (TensorRT's, in a child process, by default).

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
    with _cache_lock(cache_dir):
        decision = _decide_on_disk(p.expected, p.engine_path)
        if decision.action is Action.LOAD and not force:
            log.info("engine cache hit", engine=str(p.engine_path))
            return p.engine_path
        log.info(
            "engine build needed",
            engine=str(p.engine_path),
            reason="--force" if decision.action is Action.LOAD else decision.reason,
        )
        _build_and_record(p, _job_for(p, onnx_path, cache_dir, here, device), build_fn)
        return p.engine_path


def _utc_now() -> str:
    """Now, UTC, RFC 3339 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def needs_build(engine_config: EngineSettings, artifact_format: str) -> bool:
    """`build_needed` for an engine config (see there)."""
    return build_needed(engine_config.type, artifact_format)  # type: ignore[arg-type]


def prepare_model(engine_config: EngineSettings, model_path: Path) -> Path:
    """Make sure `model_path` can be loaded; return the file the engine will load.

    For the daemon's first start and the OTA `building` state: with TensorRT and an ONNX
    model it builds (or reuses) the engine in `engine_config.cache_dir`; with onnxruntime it
    touches nothing and needs no TensorRT.
    """
    if not needs_build(engine_config, artifact_format_of(model_path)):
        return Path(model_path)
    trt_config: TensorRTConfig = engine_config  # type: ignore[assignment]
    return ensure_engine(
        model_path,
        BuildOptions.from_config(trt_config),
        trt_config.cache_dir,
        device=trt_config.device,
    )
