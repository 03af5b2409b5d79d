"""TensorRT 10 backend (Jetson): deserialised engine, pycuda buffers, `execute_async_v3`.

The engine runs serialised TensorRT engines (`.engine`/`.plan`) built on this device by
`agent.engines.build` (which also writes the sidecar JSON this backend checks before it
loads anything). Given an ONNX path it loads the matching engine from `cache_dir` and
refuses (with the build command to run) when there is no valid one: loads never build.
It returns raw output tensors; YOLO decoding is shared with ONNX Runtime in
`agent.engines.yolo`.

CUDA context: `load()` creates one explicit context on the configured device
(`pycuda.driver.Device(n).make_context()`, never `pycuda.autoinit`) and pops it again, so
it is current on no thread between calls. Every call (`load`, `infer`, `close`) pushes it
on the calling thread for the duration of the call and pops it in `finally`: the thread
running inference owns the context while it uses it, a lock keeps calls one at a time, and
a swap or OTA thread can load/close another engine without touching this one.

`tensorrt` and `pycuda` are imported inside the methods: this module imports (and its
config validates) on machines without a GPU; using the engine there raises EngineError
"TensorRT is not installed: ...".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.engines.base import EngineError, EngineIO, TensorSpec

log = structlog.get_logger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
DEFAULT_ENGINE_CACHE = Path("/var/lib/edge-agent/engines")
ULTRALYTICS_HEADER_MAX = 1 << 20  # metadata JSON larger than this is not an Ultralytics header


class TensorRTConfig(BaseModel):
    """TensorRT backend settings; the build fields are used when the model is ONNX."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["tensorrt"] = "tensorrt"
    device: int = Field(0, ge=0, description="CUDA device ordinal.")
    warmup_runs: int = Field(2, ge=0, description="Inferences run at load, before serving.")
    precision: Literal["fp32", "fp16", "int8"] = Field(
        "fp16",
        description="Precision of engines built on this device from ONNX models. int8 also "
        "enables fp16 for layers without an int8 kernel.",
    )
    workspace_mib: int = Field(
        1024,
        gt=0,
        description="Builder workspace limit (MiB). On an 8 GB Orin Nano keep it at 1024 or "
        "less while other processes run.",
    )
    calib_images: Path | None = Field(
        None,
        description="Folder of real frames (jpg/png) for int8 calibration; required for int8 "
        "unless the ONNX model is already Q/DQ-quantised.",
    )
    calib_max_images: int = Field(
        500, ge=1, description="Most calibration images used (sorted by name)."
    )
    cache_dir: Path = Field(
        DEFAULT_ENGINE_CACHE,
        description="Engine cache: builds of ONNX models go here, and an ONNX model.path is "
        "loaded from its cached engine here (loads never build). Keep it under "
        "device.state_dir.",
    )

    @model_validator(mode="after")
    def _calibration_only_for_int8(self) -> TensorRTConfig:
        if self.calib_images is not None and self.precision != "int8":
            raise ValueError("calib_images is only used with precision: int8")
        return self


def trt_missing_error(exc: BaseException) -> EngineError:
    """The one error raised when TensorRT or pycuda cannot be imported."""
    return EngineError(
        f"TensorRT is not installed: {exc}. The tensorrt engine needs a Jetson (JetPack 6) "
        "or an NVIDIA GPU with TensorRT 10 and pycuda; use engine type onnxruntime elsewhere."
    )


def import_trt() -> tuple[Any, Any]:
    """Import (tensorrt, pycuda.driver), or raise EngineError naming what is missing."""
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise trt_missing_error(exc) from exc
    return trt, cuda


def split_ultralytics_header(blob: bytes) -> tuple[dict[str, str], bytes]:
    """Split an Ultralytics `.engine` file into (metadata, serialised engine).

    Ultralytics prefixes its engines with a little-endian int32 length and that many bytes
    of JSON metadata. A plain TensorRT plan has no such prefix and is returned unchanged
    with empty metadata.

    Args:
        blob: the whole file.

    Returns:
        Metadata as strings (values that are not strings are JSON-encoded), and the plan.
    """
    if len(blob) < 4:
        return {}, blob
    n = int.from_bytes(blob[:4], byteorder="little", signed=True)
    if n <= 1 or n > ULTRALYTICS_HEADER_MAX or 4 + n > len(blob) or blob[4:5] != b"{":
        return {}, blob
    try:
        meta = json.loads(blob[4 : 4 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}, blob
    if not isinstance(meta, dict):
        return {}, blob
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}, blob[
        4 + n :
    ]


@dataclass
class _Binding:
    """One I/O tensor: its page-locked host array and device allocation (pycuda objects)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    host: Any  # numpy array backed by pycuda page-locked memory (host.base.free())
    device: Any  # pycuda.driver.DeviceAllocation (device.free())


class TensorRTEngine:
    """An `Engine` running a serialised TensorRT 10 engine with pycuda buffers.

    Life cycle: `load(path)` -> `infer(tensor)`... -> `close()`. `close()` frees every
    device and page-locked buffer, the stream, the TensorRT objects and the CUDA context
    explicitly (no `__del__`); it is safe to call twice and after a failed `load`.
    """

    def __init__(self, config: TensorRTConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._trt: Any = None
        self._cuda: Any = None
        self._ctx: Any = None
        self._stream: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._bindings: list[_Binding] = []
        self._input: _Binding | None = None
        self._outputs: list[_Binding] = []

    # -- context handling ----------------------------------------------------------------
    @contextmanager
    def _current(self) -> Iterator[None]:
        """Make our CUDA context current on this thread for the duration of the block."""
        if self._ctx is None:
            raise EngineError("TensorRT engine is not loaded (or was closed)")
        try:
            self._ctx.push()
        except self._cuda.Error as exc:
            raise EngineError(f"cannot make the CUDA context current: {exc}") from exc
        try:
            yield
        finally:
            self._cuda.Context.pop()

    # -- load ------------------------------------------------------------------------------
    def load(self, model_path: Path) -> EngineIO:
        """Deserialise the engine, allocate its buffers, warm it up, describe its I/O.

        Raises:
            EngineError: not an engine file, TensorRT/pycuda missing, the sidecar says it was
                built for another TensorRT or GPU, deserialisation or any CUDA call failed.
        """
        model_path = Path(model_path)
        if self._ctx is not None:
            raise EngineError("engine already loaded; close() it first")
        if model_path.suffix.lower() == ".onnx":
            model_path = self._cached_engine_for(model_path)
        if not model_path.is_file():
            raise EngineError(f"engine file not found: {model_path}")
        self._trt, self._cuda = import_trt()
        try:
            blob = model_path.read_bytes()
        except OSError as exc:
            raise EngineError(f"cannot read engine file {model_path}: {exc}") from exc
        metadata, plan = split_ultralytics_header(blob)
        sidecar_meta = self._check_sidecar(model_path, plan)
        metadata.update(sidecar_meta)
        with self._lock:
            try:
                io = self._load_locked(model_path, plan, metadata)
            except BaseException:
                self._close_locked()
                raise
        log.info(
            "tensorrt engine loaded",
            path=str(model_path),
            device=self.config.device,
            tensorrt=self._trt.__version__,
            input=io.inputs[0].shape,
            outputs=[o.shape for o in io.outputs],
        )
        return io

    def _cached_engine_for(self, onnx_path: Path) -> Path:
        """The valid cached engine built from `onnx_path` with this config's build settings.

        Loading never builds (a hot swap must not wait minutes): the engine comes from
        `ensure_engine` (OTA `building` state, `edge-agent engine build`).
        """
        from agent.engines.build import BuildOptions, find_cached_engine

        return find_cached_engine(
            onnx_path,
            BuildOptions.from_config(self.config),
            self.config.cache_dir,
            device=self.config.device,
        )

    def _check_sidecar(self, model_path: Path, plan: bytes) -> dict[str, str]:
        """Refuse an engine whose sidecar records another TensorRT/GPU; return its ONNX metadata.

        An engine without a sidecar (e.g. a prebuilt OTA artifact) is loaded on the strength
        of its manifest's compat check; TensorRT itself refuses a plan from another version.
        """
        from agent.engines.build import (
            EngineRecordError,
            platform_mismatches,
            probe_platform,
            read_record,
            sidecar_path,
        )

        side = sidecar_path(model_path)
        if not side.exists():
            log.warning(
                "engine has no sidecar; relying on TensorRT's own version check",
                path=str(model_path),
            )
            return {}
        try:
            record = read_record(side)
        except EngineRecordError as exc:
            raise EngineError(
                f"engine sidecar {side} is unreadable ({exc}); rebuild the engine"
            ) from exc
        here = probe_platform(self.config.device)
        problems = platform_mismatches(record.identity, here)
        if problems:
            raise EngineError(
                f"engine {model_path} was built for another platform ({'; '.join(problems)}); "
                "rebuild it on this device (`edge-agent engine build`)"
            )
        import hashlib

        if hashlib.sha256(plan).hexdigest() != record.engine_sha256:
            raise EngineError(
                f"engine {model_path} does not match its sidecar sha256 (truncated or replaced); "
                "rebuild it"
            )
        meta = dict(record.onnx_metadata)
        meta["source_onnx_sha256"] = record.identity.onnx_sha256
        return meta

    def _load_locked(self, model_path: Path, plan: bytes, metadata: dict[str, str]) -> EngineIO:
        trt, cuda = self._trt, self._cuda
        try:
            cuda.init()
            count = cuda.Device.count()
            if self.config.device >= count:
                raise EngineError(
                    f"CUDA device {self.config.device} requested but {count} device(s) present"
                )
            self._ctx = cuda.Device(self.config.device).make_context()
        except cuda.Error as exc:
            raise EngineError(
                f"cannot create a CUDA context on device {self.config.device}: {exc}"
            ) from exc
        try:
            # make_context() leaves the new context current; every call below runs inside it.
            try:
                self._stream = cuda.Stream()
            except cuda.Error as exc:
                raise EngineError(f"cannot create a CUDA stream: {exc}") from exc
            self._runtime = trt.Runtime(_trt_logger(trt))
            if self._runtime is None:
                raise EngineError("TensorRT could not create a runtime")
            self._engine = self._runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise EngineError(
                    f"TensorRT {trt.__version__} could not deserialise {model_path}: corrupt, or "
                    "built with another TensorRT version or for another GPU; rebuild it here"
                )
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise EngineError(
                    f"TensorRT could not create an execution context for {model_path}"
                )
            self._allocate(model_path)
            io = self._describe(metadata)
            warm = np.zeros(io.inputs[0].shape, dtype=np.float32)
            for _ in range(self.config.warmup_runs):
                self._run(warm)
            return io
        finally:
            cuda.Context.pop()

    def _allocate(self, model_path: Path) -> None:
        """Discover I/O tensors by name and mode, fix dynamic input shapes, allocate buffers."""
        trt, cuda, engine, context = self._trt, self._cuda, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EngineError(
                f"not a detector: {model_path} has {len(inputs)} inputs {inputs}; "
                "YOLO engines take one"
            )
        for name in inputs:
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                # Dynamic engine: run at the optimisation profile's opt shape (profile 0).
                _min, opt, _max = engine.get_tensor_profile_shape(name, 0)
                if not context.set_input_shape(name, tuple(opt)):
                    raise EngineError(f"TensorRT refused input shape {tuple(opt)} for {name}")
        missing = context.infer_shapes()
        if missing:
            raise EngineError(f"TensorRT cannot infer shapes; unspecified tensors: {missing}")
        for name in names:
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineError(
                    f"tensor {name} still has a dynamic shape {shape} after set_input_shape"
                )
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            try:
                host = cuda.pagelocked_empty(shape, dtype)
                device = cuda.mem_alloc(max(host.nbytes, 1))
            except cuda.Error as exc:
                raise EngineError(
                    f"cannot allocate buffers for {name} {shape} {dtype}: {exc}"
                ) from exc
            binding = _Binding(name, is_input, shape, dtype, host, device)
            self._bindings.append(binding)
            if not context.set_tensor_address(name, int(device)):
                raise EngineError(f"TensorRT refused the device address for tensor {name}")
        self._input = next(b for b in self._bindings if b.is_input)
        self._outputs = [b for b in self._bindings if not b.is_input]
        if self._input.dtype.kind != "f" or len(self._input.shape) != 4:
            raise EngineError(
                f"not a detector: input {self._input.name} is {self._input.shape} "
                f"{self._input.dtype}; expected a 4-D float (N, 3, H, W) tensor"
            )

    def _describe(self, metadata: dict[str, str]) -> EngineIO:
        if self._input is None:
            raise EngineError("TensorRT engine has no input binding")
        return EngineIO(
            inputs=(TensorSpec(self._input.name, self._input.shape, str(self._input.dtype)),),
            outputs=tuple(TensorSpec(b.name, b.shape, str(b.dtype)) for b in self._outputs),
            metadata=metadata,
        )

    # -- inference ---------------------------------------------------------------------
    def infer(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run one (N, 3, H, W) float32 tensor (the loaded input shape); outputs in order.

        Returns:
            Fresh float32 arrays, one per output tensor, shapes as in `load()`'s EngineIO.
        """
        with self._lock:
            with self._current():
                return self._run(tensor)

    def _run(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """H2D copy, execute_async_v3, D2H copies, synchronise (context already current)."""
        cuda, inp = self._cuda, self._input
        if inp is None or self._context is None:
            raise EngineError("TensorRT engine is not loaded (or was closed)")
        if tuple(tensor.shape) != inp.shape:
            raise EngineError(f"input shape {tuple(tensor.shape)} != engine input {inp.shape}")
        np.copyto(inp.host, tensor, casting="same_kind")
        try:
            cuda.memcpy_htod_async(inp.device, inp.host, self._stream)
            if not self._context.execute_async_v3(stream_handle=self._stream.handle):
                raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            for out in self._outputs:
                cuda.memcpy_dtoh_async(out.host, out.device, self._stream)
            self._stream.synchronize()
        except cuda.Error as exc:
            raise EngineError(f"CUDA error during inference: {exc}") from exc
        return [out.host.astype(np.float32, copy=True) for out in self._outputs]

    # -- close -------------------------------------------------------------------------
    def close(self) -> None:
        """Free buffers, stream, TensorRT objects and the CUDA context. Safe to call twice."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._ctx is None:
            return
        cuda = self._cuda
        errors: list[str] = []
        try:
            self._ctx.push()
        except cuda.Error as exc:  # context already gone: nothing of ours can be freed
            errors.append(f"push: {exc}")
        else:
            try:
                if self._stream is not None:
                    self._stream.synchronize()
            except cuda.Error as exc:
                errors.append(f"synchronize: {exc}")
            for b in self._bindings:
                for what, free in (("device", b.device.free), ("host", b.host.base.free)):
                    try:
                        free()
                    except cuda.Error as exc:
                        errors.append(f"free {what} {b.name}: {exc}")
            # TensorRT objects go before the context they live in: context, engine, runtime.
            self._bindings, self._input, self._outputs = [], None, []
            self._context = None
            self._engine = None
            self._runtime = None
            self._stream = None
            cuda.Context.pop()
        try:
            self._ctx.detach()
        except cuda.Error as exc:
            errors.append(f"detach: {exc}")
        self._ctx = None
        if errors:
            log.error("tensorrt close had errors", errors=errors)
        else:
            log.info("tensorrt engine closed", device=self.config.device)

    @property
    def loaded(self) -> bool:
        """True between a successful `load` and `close`."""
        return self._ctx is not None


_LOGGERS: dict[int, Any] = {}


def _trt_logger(trt: Any) -> Any:
    """One TensorRT logger per process that forwards warnings and errors to structlog.

    TensorRT requires the logger to outlive every object created with it, hence the cache.
    """
    key = id(trt)
    if key in _LOGGERS:
        return _LOGGERS[key]
    severity = trt.ILogger.Severity
    levels = {
        severity.INTERNAL_ERROR: "critical",
        severity.ERROR: "error",
        severity.WARNING: "warning",
    }

    class _StructlogTrtLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev: Any, msg: str) -> None:
            level = levels.get(sev)
            if level is not None:  # INFO and VERBOSE are dropped: too chatty for a daemon
                getattr(log, level)("tensorrt", message=msg)

    _LOGGERS[key] = _StructlogTrtLogger()
    return _LOGGERS[key]
