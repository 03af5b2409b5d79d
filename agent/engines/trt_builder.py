"""The TensorRT 10 builder: ONNX parser, builder config, INT8 entropy calibrator.

`agent.engines.build.ensure_engine` runs this in a child process
(`python -m agent.engines.trt_builder JOB.json PLAN RESULT.json`): the builder's memory
(often more than a GiB on an 8 GB Orin Nano) goes back to the system when the child exits,
and a builder crash cannot take the inference process with it.

Inside the child the build runs in the device's primary context, made current around the
whole build, and every TensorRT object (builder, network, parser, config, calibrator) is
destroyed while it is still current (TensorRT #2052, #4122: destroying them after the
context is gone crashes or leaks).

INT8: `IInt8EntropyCalibrator2` over a folder of real frames, letterboxed exactly like
inference, with a calibration cache. TensorRT 10.1 deprecated this implicit quantisation in
favour of explicit Q/DQ models (e.g. NVIDIA TensorRT Model Optimizer); an ONNX model that
already has QuantizeLinear/DequantizeLinear nodes is built without a calibrator. See
docs/jetson.md.
"""

from __future__ import annotations

import ctypes
import json
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from agent.engines.base import EngineError
from agent.engines.engine_cache import BuildJob, uses_calibration_profile
from agent.engines.trt_runtime import context_current, import_trt, primary_context, trt_logger
from agent.util.files import atomic_write, atomic_write_text

log = structlog.get_logger(__name__)


def build_serialized(job: BuildJob) -> bytes:
    """Parse the ONNX with TensorRT's parser and build a serialised engine (TensorRT 10).

    fp16 sets BuilderFlag.FP16; int8 sets INT8 and FP16, with an entropy calibrator over
    `job.calib_files` unless the model is explicitly quantised (Q/DQ).

    Raises:
        EngineError: TensorRT missing, parser errors (each listed), builder failure,
            calibration failure.
    """
    trt, cuda = import_trt()
    ctx = primary_context(cuda, job.device)
    with context_current(cuda, ctx):
        try:
            return _build(trt, cuda, job)
        except BaseException as exc:
            # The traceback keeps _build's frame, and with it the builder, network, parser
            # and config, alive past the context pop below: free them while it is current.
            traceback.clear_frames(exc.__traceback__)
            raise


def _build(trt: Any, cuda: Any, job: BuildJob) -> bytes:
    """The build proper (context current); its TensorRT objects die when it returns."""
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    if builder is None:
        raise EngineError("TensorRT could not create a builder")
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(job.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT cannot parse {job.onnx_path}: " + " | ".join(errors))
    config = builder.create_builder_config()
    calibrator = _configure(trt, cuda, builder, network, config, job)
    try:
        log.info(
            "tensorrt build started",
            onnx=str(job.onnx_path),
            precision=job.options.precision,
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


def _configure(trt: Any, cuda: Any, builder: Any, network: Any, config: Any, job: BuildJob) -> Any:
    """Workspace, progress log, profile and precision flags; returns the calibrator or None."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, job.options.workspace_mib << 20)
    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt)
    # an int8 calibrator feeds batch-1 frames at the profile's opt shape: tune for 1 then
    calibrating = job.options.precision == "int8" and not job.explicit_quantization
    opt = 1 if calibrating else job.options.max_batch
    profile = _input_profile(builder, network, job.input_hw, job.options.max_batch, opt)
    if profile is not None:
        config.add_optimization_profile(profile)
    precision = job.options.precision
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision != "int8":
        return None
    config.set_flag(trt.BuilderFlag.INT8)
    if job.explicit_quantization:
        return None
    shape = tuple(network.get_input(0).shape)
    if any(d < 0 for d in shape):
        if job.input_hw is None:
            raise EngineError("dynamic input needs --input-size for calibration")
        shape = (1, shape[1], *job.input_hw)
    calibrator = _make_calibrator(trt, cuda, job.calib_files, shape, job.calib_cache)
    config.int8_calibrator = calibrator
    if profile is not None and uses_calibration_profile(str(trt.__version__)):
        config.set_calibration_profile(profile)
    return calibrator


def _input_profile(
    builder: Any,
    network: Any,
    input_hw: tuple[int, int] | None,
    max_batch: int = 1,
    opt_batch: int = 1,
) -> Any:
    """An optimisation profile for dynamic inputs, or None for a static network.

    A dynamic batch spans 1..`max_batch`, tuned for `opt_batch` (the caller passes
    `max_batch`: with several cameras the batches are full; 1 for int8 calibration);
    dynamic H x W are pinned to `input_hw`. TensorRT 10:
    `IOptimizationProfile.set_shape(name, min, opt, max)`, added with
    `IBuilderConfig.add_optimization_profile`.
    """
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
        rest = (
            3 if shape[1] < 0 else shape[1],
            input_hw[0] if shape[2] < 0 and input_hw else shape[2],
            input_hw[1] if shape[3] < 0 and input_hw else shape[3],
        )
        if shape[0] < 0:
            low, opt, high = (1, *rest), (min(opt_batch, max_batch), *rest), (max_batch, *rest)
        else:
            low = opt = high = (shape[0], *rest)
        profile.set_shape(inp.name, low, opt, high)
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
    C++ is not safe) and end calibration; `_build` then raises them.
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
            try:
                if image is None:
                    raise EngineError(f"cannot read calibration image {path}")
                tensor, _ = letterbox(image)
                cuda.memcpy_htod(self._device, np.ascontiguousarray(tensor, dtype=np.float32))
            except (EngineError, cuda.Error) as exc:
                self.error = f"{path}: {exc}"
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
                atomic_write(cache, bytes(data), mode=0o644)

        def free(self) -> None:
            if self._device is not None:
                self._device.free()
                self._device = None

    return _Calibrator()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent() -> None:
    """Have Linux send this process SIGTERM when its parent dies.

    A builder holds up to gigabytes of GPU memory for minutes: when the agent is stopped or
    killed mid-build, its builder must not live on beside the restarted agent.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("builder cannot follow its parent", errno=ctypes.get_errno())


def run_job(job_file: Path, plan_file: Path, result_file: Path) -> int:
    """The builder process's work: build the job, write the plan or the error. Exit code.

    0: `plan_file` holds the engine. 1: `result_file` holds {"error": message}.
    """
    try:
        job = BuildJob.model_validate_json(Path(job_file).read_text(encoding="utf-8"))
        plan = build_serialized(job)
    except EngineError as exc:
        atomic_write_text(result_file, json.dumps({"error": str(exc)}))
        return 1
    atomic_write(plan_file, plan)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m agent.engines.trt_builder JOB.json PLAN RESULT.json")
    end_with_parent()
    sys.exit(run_job(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
