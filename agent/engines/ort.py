"""ONNX Runtime backend: CPU here, CUDA or TensorRT execution providers where present."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import Field

from agent.engines.base import EngineError, EngineIO, TensorSpec
from agent.engines.model_loading import ModelMetadataError, metadata_imgsz
from agent.util.models import FrozenModel

if TYPE_CHECKING:
    import onnxruntime

log = structlog.get_logger(__name__)

DEFAULT_WARMUP_SIZE = 640  # used only for dynamic H/W with no `imgsz` metadata
DEFAULT_TRT_CACHE = Path("/var/lib/edge-agent/ort-trt-cache")
TRT_PROVIDER = "TensorrtExecutionProvider"
ProviderEntry = str | tuple[str, dict[str, object]]
SpinMode = Literal["auto", "on", "off"]
SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
"""ONNX Runtime's session config keys: thread pools spin-wait for work after each run ("1",
its default) or sleep at once ("0"). Fixed when the session is created."""
SPIN_BUSY_FRACTION = 0.7
"""spin: auto turns spinning on when the cameras would keep the engine busy this much."""
SPIN_TIMED_RUNS = 3
"""spin: auto times at least this many warm runs (after the first) and takes the fastest."""


class OnnxRuntimeConfig(FrozenModel):
    """ONNX Runtime backend settings: providers, threads, and the TensorRT provider's caches."""

    type: Literal["onnxruntime"] = "onnxruntime"
    providers: list[
        Literal["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    ] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1)
    """Execution providers in order of preference."""
    allow_provider_fallback: bool = False
    """Run on the providers that exist when a requested one is missing (logged); false: refuse to
    start."""
    threads: int = Field(0, ge=0)
    """Intra-op threads; 0 lets ONNX Runtime choose."""
    warmup_runs: int = Field(2, ge=0)
    """Inferences run at load, before serving."""
    spin: SpinMode = "auto"
    """Whether the thread pools spin-wait for work between runs (fast when frames come back to back,
    a core burnt between paced frames): on, off, or auto: on when the cameras' combined fps would
    keep the engine busy at least 70 % of the time at the speed timed during warm-up (or when they
    ask for frames as fast as it runs), off otherwise, and off with one thread or a GPU provider.
    Decided once per model load and logged; other jobs slowing the warm-up can tip auto to on: set
    on or off where that matters."""
    expected_fps: float | None = Field(None, gt=0)
    """Frames per second the engine is expected to serve, for spin: auto. Null: `edge-agent run`
    sums its cameras' rates (fps_cap, a paced file's fps, a V4L2 camera's fps, else 30; an unpaced
    or every_frame file counts as unbounded)."""
    trt_cache_dir: Path = DEFAULT_TRT_CACHE
    """TensorrtExecutionProvider only: where it keeps the engines it builds and its timing cache, so
    a restart or a swap back to a known model loads in seconds instead of rebuilding for minutes.
    Keep it under device.state_dir."""
    trt_fp16: bool = True
    """TensorrtExecutionProvider only: build fp16 engines (the usual choice on Jetson); false:
    fp32."""


def provider_entries(config: OnnxRuntimeConfig, providers: list[str]) -> list[ProviderEntry]:
    """The `providers` argument of `InferenceSession`: TensorRT configured, others by name. Pure.

    Unconfigured, ONNX Runtime's TensorRT provider rebuilds its engine at every session
    start (minutes on a Jetson) and runs fp32: the engine cache, the timing cache and fp16
    are set here.
    """
    cache = str(config.trt_cache_dir)
    trt_options: dict[str, object] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": config.trt_fp16,
    }
    return [(p, trt_options) if p == TRT_PROVIDER else p for p in providers]


def spin_untimed(config: OnnxRuntimeConfig, providers: list[str]) -> tuple[bool, str] | None:
    """Whether the session's thread pools spin, and why, when that needs no timing; None when
    spin: auto must time a warm run first (`spin_timed`). Pure."""
    if config.spin != "auto":
        return config.spin == "on", "configured"
    if providers and providers[0] != "CPUExecutionProvider":
        return False, f"{providers[0]} runs the model: the CPU threads mostly wait"
    if config.threads == 1:
        return False, "one intra-op thread: no thread pool to spin"
    fps = config.expected_fps
    if fps is None or math.isinf(fps):
        return True, "frames are asked for as fast as the engine runs"
    return None


def spin_timed(expected_fps: float, run_ms: float | None) -> tuple[bool, str]:
    """spin: auto from the engine's warm run time: on when `expected_fps` frames a second
    keep it busy at least SPIN_BUSY_FRACTION of the time. Pure."""
    if run_ms is None:
        return False, "no warm-up run to time"
    busy = expected_fps * run_ms / 1000.0
    on = busy >= SPIN_BUSY_FRACTION
    verdict = "the engine is the bottleneck" if on else "idle between frames"
    return on, f"{expected_fps:g} fps x {run_ms:.1f} ms a run = {busy:.0%} busy: {verdict}"


def _ort_errors() -> tuple[type[BaseException], ...]:
    """The exception types onnxruntime raises for bad models (they derive from Exception)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidProtobuf",
        "InvalidGraph",
        "NoSuchFile",
        "NoModel",
        "RuntimeException",
        "NotImplemented",
    )
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (RuntimeError, OSError)


def _dims(shape: list[int | str | None]) -> tuple[int, ...]:
    """ONNX Runtime shape (ints, or strings/None for dynamic dims) -> ints with -1 for dynamic."""
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxRuntimeEngine:
    """An `Engine` running a model with ONNX Runtime.

    Providers come from the config in order; a requested provider that this onnxruntime
    build lacks (or that fails to initialise) is an EngineError unless
    `allow_provider_fallback` is set, in which case it is logged as a warning.
    """

    def __init__(self, config: OnnxRuntimeConfig) -> None:
        self.config = config
        self._session: onnxruntime.InferenceSession | None = None
        self._input_name = ""
        self._output_names: list[str] = []
        self.providers: list[str] = []
        self.spinning = False
        """Whether the session's thread pools spin-wait between runs (see `spin`)."""

    def _choose_providers(self) -> list[str]:
        import onnxruntime as ort

        available = ort.get_available_providers()
        requested = list(self.config.providers)
        missing = [p for p in requested if p not in available]
        if not missing:
            return requested
        if not self.config.allow_provider_fallback:
            raise EngineError(
                f"execution provider(s) {missing} requested but this onnxruntime "
                f"({ort.__version__}) offers only {available}; install the matching "
                "onnxruntime build (e.g. onnxruntime-gpu) or set allow_provider_fallback: true"
            )
        chosen = [p for p in requested if p in available] or ["CPUExecutionProvider"]
        log.warning("onnxruntime provider fallback", missing=missing, using=chosen)
        return chosen

    def load(self, model_path: Path) -> EngineIO:
        """Open the model, check it takes one 4-D float image tensor, warm it up.

        Raises:
            EngineError: missing or corrupt file, missing provider, not a detector input.
        """
        import onnxruntime as ort

        model_path = Path(model_path)
        if self._session is not None:
            raise EngineError("engine already loaded; close() it first")
        if not model_path.is_file():
            raise EngineError(f"model file not found: {model_path}")
        providers = self._choose_providers()
        untimed = spin_untimed(self.config, providers)
        spin, why = untimed if untimed is not None else (False, "")
        io = self._start(ort, model_path, providers, spin)
        runs = self.config.warmup_runs
        if untimed is None and runs > 0:
            runs = max(runs, SPIN_TIMED_RUNS + 1)  # the fastest of a few: a busy moment passes
        try:
            run_ms = self._warmup(io, runs)
            if untimed is None and self.config.expected_fps is not None:
                spin, why = spin_timed(self.config.expected_fps, run_ms)
                if spin:  # fixed when a session is created: open it again, spinning
                    self.close()
                    io = self._start(ort, model_path, providers, spin)
                    self._warmup(io, 1)
        except EngineError:
            self.close()
            raise
        self.spinning = spin
        log.info(
            "onnxruntime model loaded",
            path=str(model_path),
            providers=self.providers,
            threads=self.config.threads,
            input=io.inputs[0].shape,
            outputs=[o.shape for o in io.outputs],
            warm_run_ms=None if run_ms is None else round(run_ms, 2),
            spin=spin,
            spin_reason=why,
        )
        return io

    def _start(self, ort: Any, model_path: Path, providers: list[str], spin: bool) -> EngineIO:
        """Open the session (thread pools spinning or not) and describe its input/outputs."""
        session = self._open_session(ort, model_path, providers, spin)
        io = self._describe(session, model_path)
        self._session = session
        self._input_name = io.inputs[0].name
        self._output_names = [o.name for o in io.outputs]
        self.providers = session.get_providers()
        return io

    def _open_session(
        self, ort: Any, model_path: Path, providers: list[str], spin: bool
    ) -> onnxruntime.InferenceSession:
        """An InferenceSession on `providers` (TensorRT configured); refuse dropped providers."""
        if TRT_PROVIDER in providers:
            try:
                self.config.trt_cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EngineError(
                    f"cannot create the TensorRT provider cache {self.config.trt_cache_dir}: {exc}"
                ) from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        for key in SPIN_KEYS:
            options.add_session_config_entry(key, "1" if spin else "0")
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(model_path),
                sess_options=options,
                providers=provider_entries(self.config, providers),
            )
        except _ort_errors() as exc:
            raise EngineError(
                f"cannot load ONNX model {model_path} (corrupt or not an ONNX file?): {exc}"
            ) from exc
        active = session.get_providers()
        dropped = [p for p in providers if p not in active]
        if dropped and not self.config.allow_provider_fallback:
            raise EngineError(
                f"execution provider(s) {dropped} failed to initialise for {model_path} "
                f"(active: {active}); check the GPU/driver/TensorRT install or set "
                "allow_provider_fallback: true"
            )
        if dropped:
            log.warning("onnxruntime provider fallback", failed=dropped, using=active)
        return session

    @staticmethod
    def _describe(session: onnxruntime.InferenceSession, model_path: Path) -> EngineIO:
        inputs = session.get_inputs()
        outputs = session.get_outputs()
        found = ", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs) or "none"
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
            raise EngineError(
                f"not a detector: {model_path} must take a single 4-D float image tensor "
                f"(N, 3, H, W); it takes {found}"
            )
        in_shape = _dims(inputs[0].shape)
        if in_shape[1] not in (3, -1):
            raise EngineError(
                f"not a detector: {model_path} input has {in_shape[1]} channels, not 3"
            )
        return EngineIO(
            inputs=(TensorSpec(inputs[0].name, in_shape, inputs[0].type),),
            outputs=tuple(TensorSpec(o.name, _dims(o.shape), o.type) for o in outputs),
            metadata=dict(session.get_modelmeta().custom_metadata_map),
        )

    def _warmup(self, io: EngineIO, runs: int) -> float | None:
        """Run `runs` zero tensors; dynamic H/W take the `imgsz` metadata (else 640). Returns
        the fastest run after the first (which allocates) in ms, None without runs."""
        if runs == 0:
            return None
        _, _, h, w = io.inputs[0].shape
        if h <= 0 or w <= 0:
            try:
                hw = metadata_imgsz(io.metadata)
            except ModelMetadataError:
                hw = None  # reported by the Detector, which needs a valid size
            if hw is None:
                hw = (DEFAULT_WARMUP_SIZE, DEFAULT_WARMUP_SIZE)
                log.info("dynamic input without imgsz metadata: warming up at 640x640")
            h, w = (h if h > 0 else hw[0]), (w if w > 0 else hw[1])
        dummy = np.zeros((1, 3, h, w), dtype=np.float32)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.infer(dummy)
            times.append((time.perf_counter() - start) * 1000.0)
        return min(times[1:] or times)

    def infer(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run one (1, 3, H, W) float32 tensor; return the outputs in the model's order."""
        if self._session is None:
            raise EngineError("engine is not loaded (or was closed)")
        try:
            return self._session.run(self._output_names, {self._input_name: tensor})
        except _ort_errors() as exc:
            raise EngineError(f"onnxruntime inference failed: {exc}") from exc

    @property
    def session(self) -> onnxruntime.InferenceSession:
        """The underlying session (for benchmarks); EngineError when not loaded."""
        if self._session is None:
            raise EngineError("engine is not loaded (or was closed)")
        return self._session

    def close(self) -> None:
        """Release the session. Safe to call twice."""
        self._session = None
        self._output_names = []
