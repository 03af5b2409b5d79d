"""What every TensorRT user in this process shares: the imports, the logger, the CUDA context.

- `import_trt()`: (tensorrt, pycuda.driver), or the one EngineError saying they are missing.
- `trt_logger(trt)`: the process's TensorRT logger (forwards warnings and errors to structlog).
- `primary_context(cuda, device)`: the device's primary CUDA context, retained once for the
  life of the process, with blocking-sync scheduling. Every engine pushes it around each
  call on whichever thread makes the call and pops it afterwards (`context_current`).
  Nothing ever creates or destroys a context per engine: pycuda's `Context.detach()` from a
  thread where the context is not current does nothing, so per-engine contexts leaked one
  context per model swap (the OTA thread closes what the pipeline thread loaded).
- `probe_platform(device)`: the TensorRT version and GPU model an engine is built for.

`tensorrt`, `pycuda` and `cuda-python` are imported inside the functions, so importing
this module needs no GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from agent.engines.base import EngineError
from agent.engines.engine_cache import Platform

log = structlog.get_logger(__name__)

_LOGGERS: dict[int, Any] = {}
_PRIMARY: dict[int, Any] = {}
_PRIMARY_LOCK = threading.Lock()


def trt_missing_error(exc: BaseException) -> EngineError:
    """The one error raised when TensorRT, pycuda or cuda-python cannot be imported."""
    return EngineError(
        f"TensorRT is not installed: {exc}. The tensorrt engine needs a Jetson (JetPack 6) "
        "or an NVIDIA GPU with TensorRT 10, pycuda and cuda-python; use engine type "
        "onnxruntime elsewhere."
    )


def import_trt() -> tuple[Any, Any]:
    """Import (tensorrt, pycuda.driver), or raise EngineError naming what is missing."""
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise trt_missing_error(exc) from exc
    return trt, cuda


def trt_logger(trt: Any) -> Any:
    """The process's TensorRT logger: warnings and errors go to structlog.

    TensorRT requires the logger to outlive every object created with it, hence one per
    process (per imported tensorrt module), cached here.
    """
    key = id(trt)
    if key not in _LOGGERS:
        _LOGGERS[key] = _make_logger(trt)
    return _LOGGERS[key]


def _make_logger(trt: Any) -> Any:
    """A trt.ILogger subclass instance that forwards to structlog (INFO and VERBOSE dropped)."""
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
            if level is not None:  # INFO and VERBOSE are too chatty for a daemon
                getattr(log, level)("tensorrt", message=msg)

    return _StructlogTrtLogger()


def _driver_bindings() -> Any:
    """cuda-python's driver API module (`cuda.bindings.driver`, or `cuda.cuda` before 12.6)."""
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver
        except ImportError as exc:
            raise trt_missing_error(exc) from exc
    return driver


def _checked(driver: Any, result: tuple[Any, ...], call: str) -> Any:
    """cuda-python returns (CUresult, *values): raise EngineError unless CUDA_SUCCESS."""
    err, values = result[0], result[1:]
    if err != driver.CUresult.CUDA_SUCCESS:
        raise EngineError(f"CUDA {call} failed: {err}")
    return values[0] if len(values) == 1 else None


def set_primary_context_flags(device: int) -> None:
    """Blocking-sync scheduling (and mapped host memory) for `device`'s primary context.

    Why: the default (CU_CTX_SCHED_AUTO) spins a CPU core while a stream synchronises when
    there are fewer contexts than cores; on a 6-core Orin Nano that is a whole core burnt per
    inference thread for ~5 ms every frame, taken from decoding and publishing. Blocking sync
    sleeps on an OS primitive instead. pycuda's `retain_primary_context()` takes no flags, so
    they are set with the driver API (`cuDevicePrimaryCtxSetFlags`) before the first retain.
    CU_CTX_MAP_HOST lets an integrated GPU use mapped pinned host memory (zero-copy).

    Raises:
        EngineError: cuda-python missing, or the driver refused.
    """
    driver = _driver_bindings()
    _checked(driver, driver.cuInit(0), "cuInit")
    dev = _checked(driver, driver.cuDeviceGet(device), "cuDeviceGet")
    flags = int(driver.CUctx_flags.CU_CTX_SCHED_BLOCKING_SYNC) | int(
        driver.CUctx_flags.CU_CTX_MAP_HOST
    )
    _checked(driver, driver.cuDevicePrimaryCtxSetFlags(dev, flags), "cuDevicePrimaryCtxSetFlags")


def primary_context(cuda: Any, device: int) -> Any:
    """The primary CUDA context of `device`, retained once per process and never released.

    Every TensorRT object, stream and buffer of this process lives in it; engines come and
    go (hot swaps, rollbacks, pause-mode unloads) without creating or destroying contexts.

    Raises:
        EngineError: no such device, or CUDA refused.
    """
    with _PRIMARY_LOCK:
        ctx = _PRIMARY.get(device)
        if ctx is not None:
            return ctx
        try:
            cuda.init()
            count = cuda.Device.count()
            if device >= count:
                raise EngineError(f"CUDA device {device} requested but {count} device(s) present")
            set_primary_context_flags(device)
            ctx = cuda.Device(device).retain_primary_context()
        except cuda.Error as exc:
            raise EngineError(f"cannot retain the CUDA context of device {device}: {exc}") from exc
        _PRIMARY[device] = ctx
        return ctx


@contextmanager
def context_current(cuda: Any, ctx: Any) -> Iterator[None]:
    """Make `ctx` current on this thread for the block; pop it again however the block ends."""
    try:
        ctx.push()
    except cuda.Error as exc:
        raise EngineError(f"cannot make the CUDA context current: {exc}") from exc
    try:
        yield
    finally:
        cuda.Context.pop()


def device_is_integrated(cuda: Any, device: int) -> bool:
    """True for a GPU sharing memory with the CPU (Jetson/Tegra): zero-copy beats copies there."""
    return bool(cuda.Device(device).get_attribute(cuda.device_attribute.INTEGRATED))


def probe_platform(device: int = 0) -> Platform:
    """TensorRT version, GPU model (name with SM count) and compute capability of `device`.

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
