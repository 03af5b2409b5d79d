"""TensorRT 10 backend (Jetson): deserialised engine, pycuda buffers, `execute_async_v3`.

The engine runs serialised TensorRT engines (`.engine`/`.plan`) built on this device by
`agent.engines.build` (which also writes the sidecar JSON this backend checks before it
loads anything). Given an ONNX path it loads the matching engine from `cache_dir` and
refuses (with the build command to run) when there is no valid one: loads never build.
It returns raw output tensors; YOLO decoding is shared with ONNX Runtime in
`agent.engines.yolo`.

CUDA context: every engine of the process uses the device's primary context
(`agent.engines.trt_runtime.primary_context`, retained once, blocking-sync scheduling).
Every call (`load`, `infer`, `close`) pushes it on the calling thread for the duration of
the call and pops it in `finally`, so an engine loaded on one thread, run on another and
closed on a third (a hot swap from the OTA thread) frees everything it allocated and no
context is ever left behind. A lock keeps one engine's calls one at a time.

Buffers: on an integrated GPU (Jetson: the device's `INTEGRATED` attribute) inputs and
outputs live in mapped pinned host memory that the GPU reads and writes directly (no
host<->device copies on a unified-memory device); a discrete GPU gets device buffers and
async copies.

Dynamic shapes: a dynamic H x W runs at the model's input size (the manifest's, else the
`imgsz` metadata), never the optimisation profile's `opt` shape (Ultralytics' dynamic
export puts batch 16 there). A dynamic batch axis takes 1..`max_batch` frames per call
(capped by the profile's max): buffers are allocated for the largest batch once, and a call
with another batch size only sets the context's input shape (`set_input_shape`) before
`execute_async_v3`; the outputs' first rows are that call's. The engine reports the axis
as dynamic (-1) and its bound as `EngineIO.max_batch`.

`tensorrt` and `pycuda` are imported inside the methods: this module imports (and its
config validates) on machines without a GPU; using the engine there raises EngineError
"TensorRT is not installed: ...".
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import Field, model_validator

from agent.engines.base import EngineError, EngineIO, TensorSpec
from agent.engines.engine_cache import (
    BuildOptions,
    EngineRecordError,
    platform_mismatches,
    sidecar_path,
)
from agent.engines.model_loading import metadata_imgsz, metadata_names
from agent.engines.trt_runtime import (
    context_current,
    device_is_integrated,
    import_trt,
    primary_context,
    probe_platform,
    trt_logger,
)
from agent.util.models import FrozenModel

log = structlog.get_logger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
DEFAULT_ENGINE_CACHE = Path("/var/lib/edge-agent/engines")
ULTRALYTICS_HEADER_MAX = 1 << 20  # metadata JSON larger than this is not an Ultralytics header
BATCH = 1  # the default batch of a dynamic-batch engine (`max_batch` raises it)


class TensorRTConfig(FrozenModel):
    """TensorRT backend settings; the build fields are used when the model is ONNX."""

    type: Literal["tensorrt"] = "tensorrt"
    device: int = Field(0, ge=0)
    """CUDA device ordinal."""
    warmup_runs: int = Field(2, ge=0)
    """Inferences run at load, before serving."""
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    """Precision of engines built on this device from ONNX models. int8 also enables fp16 for layers
    without an int8 kernel."""
    workspace_mib: int = Field(1024, gt=0)
    """Builder workspace limit (MiB). On an 8 GB Orin Nano keep it at 1024 or less while other
    processes run."""
    calib_images: Path | None = None
    """Folder of real frames (jpg/png) for int8 calibration; required for int8 unless the ONNX model
    is already Q/DQ-quantised."""
    calib_max_images: int = Field(500, ge=1)
    """Most calibration images used (sorted by name)."""
    max_batch: int = Field(BATCH, ge=1, le=64)
    """Largest batch of engines built here from ONNX models with a dynamic batch axis (optimisation
    profile 1..max_batch; part of the engine cache key). At least `batch.max` to batch across
    cameras."""
    cache_dir: Path = DEFAULT_ENGINE_CACHE
    """Engine cache: builds of ONNX models go here, and an ONNX model.path is loaded from its cached
    engine here (loads never build). Keep it under device.state_dir."""

    @model_validator(mode="after")
    def _calibration_only_for_int8(self) -> TensorRTConfig:
        if self.calib_images is not None and self.precision != "int8":
            raise ValueError("calib_images is only used with precision: int8")
        return self


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


def check_header_metadata(metadata: dict[str, str]) -> None:
    """Parse the class names and input size an engine's metadata carries, before any GPU work.

    An Ultralytics `.engine` header is JSON, so its `names` keys are strings
    (`{"0": "person"}`); a bad header fails here with ModelMetadataError instead of after a
    deserialisation that takes seconds.

    Raises:
        ModelMetadataError: `names` or `imgsz` present but unreadable.
    """
    metadata_names(metadata)
    metadata_imgsz(metadata)


def resolve_input_shape(
    engine_shape: tuple[int, ...],
    profile: tuple[tuple[int, ...], tuple[int, ...]] | None,
    input_hw: tuple[int, int] | None,
    batch: int = BATCH,
) -> tuple[int, ...]:
    """The concrete (N, 3, H, W) to run a (possibly dynamic) engine input at. Pure.

    Dynamic N becomes `batch`, dynamic C 3, dynamic H x W `input_hw`; the optimisation
    profile's `opt` shape is never used (Ultralytics' dynamic export puts batch 16 there).

    Args:
        engine_shape: the engine's input shape, -1 for dynamic dimensions.
        profile: (min, max) shapes of optimisation profile 0, or None for a static engine.
        input_hw: the model's input (H, W): manifest, else `imgsz` metadata; None if unknown.
        batch: the batch the pipeline runs.

    Raises:
        EngineError: not 4-D, a dynamic size with no known input size, or outside the profile.
    """
    if len(engine_shape) != 4:
        raise EngineError(f"not a detector: input shape {engine_shape}; expected (N, 3, H, W)")
    n, c, h, w = engine_shape
    if (h < 0 or w < 0) and input_hw is None:
        raise EngineError(
            f"engine input {engine_shape} has a dynamic size and neither a manifest "
            "input_size nor 'imgsz' metadata says which to run"
        )
    hw = input_hw or (h, w)
    shape = (batch if n < 0 else n, 3 if c < 0 else c, hw[0] if h < 0 else h, hw[1] if w < 0 else w)
    if profile is not None:
        low, high = profile
        if any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high, strict=True)):
            raise EngineError(
                f"input shape {shape} is outside the engine's optimisation profile "
                f"(min {tuple(low)}, max {tuple(high)})"
            )
    return shape


def cached_engine_for(config: TensorRTConfig, onnx_path: Path) -> Path:
    """The valid cached engine built from `onnx_path` with this config's build settings.

    Loading never builds (a hot swap must not wait minutes): the engine comes from
    `ensure_engine` (OTA `building` state, `edge-agent engine build`).
    """
    from agent.engines.build import find_cached_engine

    return find_cached_engine(
        onnx_path,
        BuildOptions.from_config(config),
        config.cache_dir,
        device=config.device,
    )


def check_sidecar(config: TensorRTConfig, model_path: Path, plan: bytes) -> dict[str, str]:
    """Refuse an engine whose sidecar records another TensorRT/GPU; return its ONNX metadata.

    An engine without a sidecar (e.g. a prebuilt OTA artifact) is loaded on the strength
    of its manifest's compat check; TensorRT itself refuses a plan from another version.
    """
    from agent.engines.build import read_record

    side = sidecar_path(model_path)
    if not side.exists():
        log.warning(
            "engine has no sidecar; relying on its manifest's compat and TensorRT's checks",
            path=str(model_path),
        )
        return {}
    try:
        record = read_record(side)
    except EngineRecordError as exc:
        raise EngineError(
            f"engine sidecar {side} is unreadable ({exc}); rebuild the engine"
        ) from exc
    problems = platform_mismatches(record.identity, probe_platform(config.device))
    if problems:
        raise EngineError(
            f"engine {model_path} was built for another platform ({'; '.join(problems)}); "
            "rebuild it on this device (`edge-agent engine build`)"
        )
    if hashlib.sha256(plan).hexdigest() != record.engine_sha256:
        raise EngineError(
            f"engine {model_path} does not match its sidecar sha256 (truncated or replaced); "
            "rebuild it"
        )
    meta = dict(record.onnx_metadata)
    meta["source_onnx_sha256"] = record.identity.onnx_sha256
    return meta


@dataclass
class _Binding:
    """One I/O tensor: its page-locked host array and where the GPU sees it.

    `mapped`: the host array is mapped pinned memory the GPU addresses directly
    (`address` is its device pointer; `device` is None): zero-copy on an integrated GPU.
    Otherwise `device` is a separate pycuda DeviceAllocation and calls copy.
    """

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    host: Any  # numpy array backed by pycuda page-locked memory (host.base.free())
    device: Any  # pycuda.driver.DeviceAllocation, or None when mapped
    address: int
    mapped: bool


def _allocate_binding(
    cuda: Any, name: str, is_input: bool, shape: tuple[int, ...], dtype: Any, mapped: bool
) -> _Binding:
    """Page-locked host memory, mapped (zero-copy) or with a device twin (context current)."""
    try:
        if mapped:
            flags = cuda.host_alloc_flags.DEVICEMAP
            host = cuda.pagelocked_empty(shape, dtype, mem_flags=flags)
            return _Binding(
                name, is_input, shape, dtype, host, None, int(host.base.get_device_pointer()), True
            )
        host = cuda.pagelocked_empty(shape, dtype)
        device = cuda.mem_alloc(max(host.nbytes, 1))
    except cuda.Error as exc:
        raise EngineError(f"cannot allocate buffers for {name} {shape} {dtype}: {exc}") from exc
    return _Binding(name, is_input, shape, dtype, host, device, int(device), False)


def _free_binding(cuda: Any, b: _Binding) -> list[str]:
    """Free a binding's memory (context current); the errors, if any."""
    errors = []
    frees = [("host", b.host.base.free)]
    if b.device is not None:
        frees.insert(0, ("device", b.device.free))
    for what, free in frees:
        try:
            free()
        except cuda.Error as exc:
            errors.append(f"free {what} {b.name}: {exc}")
    return errors


def batch_of(shape: tuple[int, ...], loaded: tuple[int, ...], dynamic: bool) -> int:
    """The batch of an input `shape` for an engine loaded at `loaded` (its largest batch when
    the batch axis is `dynamic`). Pure.

    Raises:
        EngineError: another image shape, or a batch outside 1..loaded[0] (dynamic) or other
            than loaded[0] (static).
    """
    n = int(shape[0]) if shape else 0
    if shape[1:] == loaded[1:] and (n == loaded[0] or (dynamic and 1 <= n <= loaded[0])):
        return n
    what = f"batch 1..{loaded[0]} of " if dynamic else ""
    raise EngineError(f"input shape {shape} != engine input {what}{loaded}")


def engine_io(
    inp: _Binding, outputs: list[_Binding], metadata: dict[str, str], dynamic: bool
) -> EngineIO:
    """What a loaded engine takes and gives. A dynamic batch axis is reported as -1 (inputs
    and outputs, batch first) with the allocated batch as `max_batch`. Pure."""
    if not dynamic:
        return EngineIO(
            inputs=(TensorSpec(inp.name, inp.shape, str(inp.dtype)),),
            outputs=tuple(TensorSpec(b.name, b.shape, str(b.dtype)) for b in outputs),
            metadata=metadata,
        )
    return EngineIO(
        inputs=(TensorSpec(inp.name, (-1, *inp.shape[1:]), str(inp.dtype)),),
        outputs=tuple(TensorSpec(b.name, (-1, *b.shape[1:]), str(b.dtype)) for b in outputs),
        metadata=metadata,
        max_batch=inp.shape[0],
    )


class TensorRTEngine:
    """An `Engine` running a serialised TensorRT 10 engine with pycuda buffers.

    Life cycle: `load(path)` -> `infer(tensor)`... -> `close()`, each on any thread.
    `close()` frees every buffer, the stream and the TensorRT objects explicitly (no
    `__del__`) inside the process's primary context; it is safe to call twice and after a
    failed `load`.
    """

    def __init__(self, config: TensorRTConfig, *, input_hw: tuple[int, int] | None = None) -> None:
        """`input_hw`: the manifest's input (H, W), used for engines with a dynamic size."""
        self.config = config
        self.input_hw = input_hw
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
        self._dynamic_batch = False  # the input's batch axis is dynamic: 1..input.shape[0]
        self._batch_now = 0  # the batch the context's input shape is set to

    # -- load ------------------------------------------------------------------------------
    def load(self, model_path: Path) -> EngineIO:
        """Deserialise the engine, allocate its buffers, warm it up, describe its I/O.

        Raises:
            EngineError: not an engine file, bad header metadata (ModelMetadataError),
                TensorRT/pycuda missing, the sidecar says it was built for another TensorRT or
                GPU, deserialisation or any CUDA call failed.
        """
        model_path = Path(model_path)
        if self._ctx is not None:
            raise EngineError("engine already loaded; close() it first")
        if model_path.suffix.lower() == ".onnx":
            model_path = cached_engine_for(self.config, model_path)
        if not model_path.is_file():
            raise EngineError(f"engine file not found: {model_path}")
        try:
            blob = model_path.read_bytes()
        except OSError as exc:
            raise EngineError(f"cannot read engine file {model_path}: {exc}") from exc
        metadata, plan = split_ultralytics_header(blob)
        check_header_metadata(metadata)
        self._trt, self._cuda = import_trt()
        metadata.update(check_sidecar(self.config, model_path, plan))
        with self._lock:
            io = self._load_locked(model_path, plan, metadata)
        log.info(
            "tensorrt engine loaded",
            path=str(model_path),
            device=self.config.device,
            tensorrt=self._trt.__version__,
            zero_copy=self.zero_copy,
            input=io.inputs[0].shape,
            outputs=[o.shape for o in io.outputs],
        )
        return io

    def _load_locked(self, model_path: Path, plan: bytes, metadata: dict[str, str]) -> EngineIO:
        """Everything of `load` that runs in the context; undone by `_release` on failure."""
        cuda = self._cuda
        ctx = primary_context(cuda, self.config.device)
        with context_current(cuda, ctx):
            try:
                self._deserialize(model_path, plan)
                self._allocate(model_path, self._input_hw_for(metadata))
                io = self._describe(metadata)
                assert self._input is not None
                warm = np.zeros(self._input.shape, dtype=np.float32)  # the largest batch
                for _ in range(self.config.warmup_runs):
                    self._run(warm)
            except BaseException:
                errors = self._release()
                if errors:
                    log.error("tensorrt cleanup after a failed load had errors", errors=errors)
                raise
        self._ctx = ctx  # loaded: from now on `infer` and `close` push it
        return io

    def _input_hw_for(self, metadata: dict[str, str]) -> tuple[int, int] | None:
        """The input size for a dynamic engine: the manifest's, else the `imgsz` metadata."""
        return self.input_hw if self.input_hw is not None else metadata_imgsz(metadata)

    def _deserialize(self, model_path: Path, plan: bytes) -> None:
        """Stream, runtime, engine and execution context (context current)."""
        trt, cuda = self._trt, self._cuda
        try:
            self._stream = cuda.Stream()
        except cuda.Error as exc:
            raise EngineError(f"cannot create a CUDA stream: {exc}") from exc
        self._runtime = trt.Runtime(trt_logger(trt))
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
            raise EngineError(f"TensorRT could not create an execution context for {model_path}")

    def _allocate(self, model_path: Path, input_hw: tuple[int, int] | None) -> None:
        """Fix the input shape (largest batch, the model's H x W), allocate every I/O tensor."""
        trt, cuda, engine, context = self._trt, self._cuda, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EngineError(
                f"not a detector: {model_path} has {len(inputs)} inputs {inputs}; "
                "YOLO engines take one"
            )
        engine_shape = tuple(int(d) for d in engine.get_tensor_shape(inputs[0]))
        profile = None
        if any(d < 0 for d in engine_shape):
            low, _opt, high = engine.get_tensor_profile_shape(inputs[0], 0)
            profile = (tuple(low), tuple(high))
        self._dynamic_batch = engine_shape[0] < 0
        batch = BATCH
        if self._dynamic_batch and profile is not None:
            batch = max(BATCH, min(self.config.max_batch, int(profile[1][0])))
        shape = resolve_input_shape(engine_shape, profile, input_hw, batch=batch)
        if not context.set_input_shape(inputs[0], shape):
            raise EngineError(f"TensorRT refused input shape {shape} for {inputs[0]}")
        self._batch_now = shape[0]
        missing = context.infer_shapes()
        if missing:
            raise EngineError(f"TensorRT cannot infer shapes; unspecified tensors: {missing}")
        mapped = device_is_integrated(cuda, self.config.device)
        for name in names:
            self._bind(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT, mapped)
        self._input = next(b for b in self._bindings if b.is_input)
        self._outputs = [b for b in self._bindings if not b.is_input]
        if self._input.dtype.kind != "f":
            raise EngineError(
                f"not a detector: input {self._input.name} is {self._input.shape} "
                f"{self._input.dtype}; expected a float (N, 3, H, W) tensor"
            )

    def _bind(self, name: str, is_input: bool, mapped: bool) -> None:
        """Allocate one tensor's buffers and give TensorRT its address."""
        trt, context = self._trt, self._context
        shape = tuple(int(d) for d in context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise EngineError(f"tensor {name} still has a dynamic shape {shape}")
        dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
        binding = _allocate_binding(self._cuda, name, is_input, shape, dtype, mapped)
        self._bindings.append(binding)
        if not context.set_tensor_address(name, binding.address):
            raise EngineError(f"TensorRT refused the device address for tensor {name}")

    def _describe(self, metadata: dict[str, str]) -> EngineIO:
        if self._input is None:
            raise EngineError("TensorRT engine has no input binding")
        fixed = [b.name for b in self._outputs if self._engine.get_tensor_shape(b.name)[0] >= 0]
        if self._dynamic_batch and fixed:
            raise EngineError(f"dynamic input batch but outputs {fixed} have a fixed first dim")
        return engine_io(self._input, self._outputs, metadata, self._dynamic_batch)

    # -- inference ---------------------------------------------------------------------
    def infer(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run one (N, 3, H, W) float32 tensor (the loaded input shape); outputs in order.

        Returns:
            Fresh float32 arrays, one per output tensor, shapes as in `load()`'s EngineIO.
        """
        with self._lock:
            if self._ctx is None:
                raise EngineError("TensorRT engine is not loaded (or was closed)")
            with context_current(self._cuda, self._ctx):
                return self._run(tensor)

    def infer_timed(
        self, tensor: npt.NDArray[np.float32]
    ) -> tuple[list[npt.NDArray[np.float32]], dict[str, float]]:
        """`infer`, plus the GPU-side ms of its stages from CUDA events (for benchmarks).

        Returns:
            The outputs, and {"h2d", "engine", "d2h"} in ms (h2d and d2h are ~0 with mapped
            zero-copy buffers on an integrated GPU).
        """
        with self._lock:
            if self._ctx is None:
                raise EngineError("TensorRT engine is not loaded (or was closed)")
            with context_current(self._cuda, self._ctx):
                events = [self._cuda.Event() for _ in range(4)]
                outputs = self._run(tensor, events)
                stages = ("h2d", "engine", "d2h")
                return outputs, {
                    name: float(events[i].time_till(events[i + 1])) for i, name in enumerate(stages)
                }

    def _run(
        self, tensor: npt.NDArray[np.float32], events: list[Any] | None = None
    ) -> list[npt.NDArray[np.float32]]:
        """Input in, execute_async_v3, outputs out, synchronise (context already current).

        Mapped bindings need no copies: the GPU reads the input and writes the outputs in
        place, and the stream synchronisation orders that before the host reads them.
        `events`: four CUDA events recorded around the copies and the engine (benchmarks).
        """
        marks = events or []
        cuda, inp = self._cuda, self._input
        if inp is None or self._context is None:
            raise EngineError("TensorRT engine is not loaded (or was closed)")
        n = self._set_batch(tuple(tensor.shape))
        host_in = inp.host[:n]  # batch-first and contiguous: the first n rows
        np.copyto(host_in, tensor, casting="same_kind")
        try:
            self._mark(marks, 0)
            if not inp.mapped:
                cuda.memcpy_htod_async(inp.device, host_in, self._stream)
            self._mark(marks, 1)
            if not self._context.execute_async_v3(stream_handle=self._stream.handle):
                raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            self._mark(marks, 2)
            rows = [out.host[:n] if self._dynamic_batch else out.host for out in self._outputs]
            for out, host in zip(self._outputs, rows, strict=True):
                if not out.mapped:
                    cuda.memcpy_dtoh_async(host, out.device, self._stream)
            self._mark(marks, 3)
            self._stream.synchronize()
        except cuda.Error as exc:
            raise EngineError(f"CUDA error during inference: {exc}") from exc
        return [host.astype(np.float32, copy=True) for host in rows]

    def _set_batch(self, shape: tuple[int, ...]) -> int:
        """For a dynamic batch axis, set the context's input shape to the batch of `shape`
        when it changed; returns the batch (EngineError when `shape` does not fit)."""
        inp = self._input
        assert inp is not None and self._context is not None
        n = batch_of(shape, inp.shape, self._dynamic_batch)
        if n != self._batch_now:
            if not self._context.set_input_shape(inp.name, (n, *inp.shape[1:])):
                raise EngineError(f"TensorRT refused input shape {(n, *inp.shape[1:])}")
            self._batch_now = n
        return n

    def _mark(self, events: list[Any], i: int) -> None:
        """Record benchmark event `i` on the stream, when events were given."""
        if events:
            events[i].record(self._stream)

    # -- close -------------------------------------------------------------------------
    def close(self) -> None:
        """Free buffers, stream and TensorRT objects in the primary context. Safe twice."""
        with self._lock:
            if self._ctx is None:
                return
            try:
                with context_current(self._cuda, self._ctx):
                    errors = self._release()
            except EngineError as exc:  # the context cannot be made current: nothing to free
                errors = [str(exc)]
            self._ctx = None
        if errors:
            log.error("tensorrt close had errors", errors=errors)
        else:
            log.info("tensorrt engine closed", device=self.config.device)

    def _release(self) -> list[str]:
        """Drop every buffer and TensorRT object (context current); the errors, if any.

        Order: wait for the stream, free the buffers, then the execution context, engine
        and runtime (each needs the ones after it), then the stream. The context itself is
        the process's primary context and stays.
        """
        cuda, errors = self._cuda, []
        try:
            if self._stream is not None:
                self._stream.synchronize()
        except cuda.Error as exc:
            errors.append(f"synchronize: {exc}")
        for b in self._bindings:
            errors.extend(_free_binding(cuda, b))
        self._bindings, self._input, self._outputs = [], None, []
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None
        return errors

    @property
    def zero_copy(self) -> bool:
        """True when the I/O buffers are mapped pinned host memory (integrated GPU)."""
        return bool(self._input is not None and self._input.mapped)

    @property
    def loaded(self) -> bool:
        """True between a successful `load` and `close`."""
        return self._ctx is not None
