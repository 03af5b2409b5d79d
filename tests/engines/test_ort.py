"""The ONNX Runtime engine on real models: the demo YOLO and tiny synthetic graphs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto
from structlog.testing import capture_logs

from agent.engines.base import Engine, EngineError
from agent.engines.ort import (
    SPIN_KEYS,
    OnnxRuntimeConfig,
    OnnxRuntimeEngine,
    provider_entries,
    spin_timed,
    spin_untimed,
)
from agent.engines.registry import create_engine
from tests.engines.synthetic import constant_output_model, ultralytics_metadata

CPU = OnnxRuntimeConfig(threads=1, warmup_runs=1)


@pytest.fixture
def engine() -> Iterator[OnnxRuntimeEngine]:
    """A CPU engine, closed after the test."""
    eng = OnnxRuntimeEngine(CPU)
    yield eng
    eng.close()


def test_registry_builds_an_onnxruntime_engine():
    """The registry maps type 'onnxruntime' to this backend, which satisfies the Protocol."""
    eng = create_engine(CPU)
    assert isinstance(eng, OnnxRuntimeEngine) and isinstance(eng, Engine)


def test_loads_demo_model_with_metadata(engine, demo_model):
    """The demo model loads with its NCHW input, [1, 4+nc, N] output and Ultralytics metadata."""
    io = engine.load(demo_model)
    assert io.inputs[0].shape == (1, 3, 320, 320)
    assert io.outputs[0].shape == (1, 6, 2100)
    assert io.metadata["names"] == "{0: 'person', 1: 'car'}"
    assert io.metadata["task"] == "detect"
    assert engine.providers == ["CPUExecutionProvider"]


def test_infer_returns_outputs_of_the_declared_shape(engine, demo_model):
    """infer runs one tensor and returns the outputs in order."""
    io = engine.load(demo_model)
    outputs = engine.infer(np.zeros((1, 3, 320, 320), dtype=np.float32))
    assert [o.shape for o in outputs] == [io.outputs[0].shape]
    assert outputs[0].dtype == np.float32


def test_session_uses_configured_threads_and_full_optimisation(demo_model):
    """The session gets the configured intra-op thread count and all graph optimisations."""
    import onnxruntime as ort

    eng = OnnxRuntimeEngine(OnnxRuntimeConfig(threads=1, warmup_runs=0))
    eng.load(demo_model)
    options = eng.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    eng.close()


def test_missing_file_is_a_clear_error(engine, tmp_path):
    """A model path that does not exist is refused by name."""
    missing = tmp_path / "nope.onnx"
    with pytest.raises(EngineError, match=f"model file not found: {missing}"):
        engine.load(missing)


@pytest.mark.parametrize(
    "make",
    [
        lambda src, dst: dst.write_bytes(
            src.read_bytes()[: len(src.read_bytes()) // 2]
        ),  # truncated
        lambda src, dst: dst.write_bytes(b"not an onnx model\n" * 10),  # text, not protobuf
        lambda src, dst: dst.write_bytes(b""),  # empty file
    ],
)
def test_corrupt_file_is_a_clear_error(engine, demo_model, tmp_path, make):
    """A truncated or garbage model file fails at load with the path in the message."""
    bad = tmp_path / "bad.onnx"
    make(demo_model, bad)
    with pytest.raises(EngineError, match=r"cannot load ONNX model .*bad\.onnx"):
        engine.load(bad)


def test_missing_provider_is_refused(demo_model):
    """Requesting CUDA where this onnxruntime has none fails, naming the provider."""
    eng = OnnxRuntimeEngine(
        OnnxRuntimeConfig(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    )
    with pytest.raises(
        EngineError, match=r"\['CUDAExecutionProvider'\] requested.*allow_provider_fallback"
    ):
        eng.load(demo_model)


def test_missing_provider_falls_back_only_when_allowed_and_logs(demo_model):
    """With allow_provider_fallback the engine runs on CPU and logs a warning."""
    eng = OnnxRuntimeEngine(
        OnnxRuntimeConfig(
            providers=["TensorrtExecutionProvider"],
            allow_provider_fallback=True,
            threads=1,
            warmup_runs=0,
        )
    )
    with capture_logs() as logs:
        eng.load(demo_model)
    assert eng.providers == ["CPUExecutionProvider"]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and warnings[0]["missing"] == ["TensorrtExecutionProvider"]
    eng.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (1, 1000)}, r"single 4-D float.*\[1, 1000\]"),  # 2-D input
        (
            {"input_shape": (1, 3, 64, 64), "extra_inputs": 1},
            r"single 4-D float.*extra0",
        ),  # 2 inputs
        (
            {"input_shape": (1, 3, 64, 64), "input_type": TensorProto.UINT8},
            r"tensor\(uint8\)",
        ),  # ints
        ({"input_shape": (1, 1, 64, 64)}, "1 channels, not 3"),  # grey input
    ],
)
def test_model_without_an_image_input_is_not_a_detector(engine, tmp_path, kwargs, message):
    """A model lacking one (N, 3, H, W) float input fails at load as 'not a detector'."""
    path = constant_output_model(tmp_path / "m.onnx", np.zeros((1, 6, 10), np.float32), **kwargs)
    with pytest.raises(EngineError, match=f"not a detector.*{message}"):
        engine.load(path)


def test_dynamic_input_warms_up_at_metadata_size(engine, tmp_path):
    """A model with dynamic H/W loads (warm-up uses its imgsz metadata) and reports -1 dims."""
    path = constant_output_model(
        tmp_path / "dyn.onnx",
        np.zeros((1, 6, 10), np.float32),
        input_shape=("batch", 3, "height", "width"),
        metadata=ultralytics_metadata(["a", "b"], (96, 128)),
    )
    io = engine.load(path)
    assert io.inputs[0].shape == (-1, 3, -1, -1)
    assert engine.infer(np.zeros((1, 3, 96, 128), np.float32))[0].shape == (1, 6, 10)


def test_close_is_idempotent_and_infer_after_close_fails(engine, demo_model):
    """close() twice is fine; infer afterwards is a clear error."""
    engine.load(demo_model)
    engine.close()
    engine.close()
    with pytest.raises(EngineError, match="not loaded"):
        engine.infer(np.zeros((1, 3, 320, 320), dtype=np.float32))


def test_wrong_tensor_shape_is_an_engine_error(engine, demo_model):
    """Running a tensor of the wrong size raises EngineError, not an onnxruntime internal."""
    engine.load(demo_model)
    with pytest.raises(EngineError, match="inference failed"):
        engine.infer(np.zeros((1, 3, 64, 64), dtype=np.float32))


def test_second_load_without_close_is_refused(engine, demo_model: Path):
    """Loading twice without close() is refused rather than leaking a session."""
    engine.load(demo_model)
    with pytest.raises(EngineError, match="already loaded"):
        engine.load(demo_model)


def test_tensorrt_provider_is_configured(tmp_path: Path) -> None:
    """The TensorRT provider gets engine cache, timing cache and fp16; others stay names."""
    config = OnnxRuntimeConfig(trt_cache_dir=tmp_path / "ort-trt")
    entries = provider_entries(
        config, ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert entries[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    name, options = entries[0]
    assert name == "TensorrtExecutionProvider"
    assert options == {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path / "ort-trt"),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(tmp_path / "ort-trt"),
        "trt_fp16_enable": True,
    }


def test_tensorrt_provider_fp32_when_asked() -> None:
    """trt_fp16: false builds fp32 engines."""
    (_, options), *_ = provider_entries(
        OnnxRuntimeConfig(trt_fp16=False), ["TensorrtExecutionProvider"]
    )
    assert options["trt_fp16_enable"] is False


# -- spinning: fixed when the session is created ---------------------------------------------
@pytest.mark.parametrize(
    ("config", "providers", "expected"),
    [
        (OnnxRuntimeConfig(spin="on", threads=1), ["CPUExecutionProvider"], True),
        (OnnxRuntimeConfig(spin="off"), ["CPUExecutionProvider"], False),
        (OnnxRuntimeConfig(threads=1), ["CPUExecutionProvider"], False),  # no pool to spin
        (OnnxRuntimeConfig(), ["CUDAExecutionProvider", "CPUExecutionProvider"], False),
        (OnnxRuntimeConfig(), ["CPUExecutionProvider"], True),  # nobody said: as fast as it runs
        (OnnxRuntimeConfig(expected_fps=float("inf")), ["CPUExecutionProvider"], True),
        (OnnxRuntimeConfig(expected_fps=10.0), ["CPUExecutionProvider"], None),  # to be timed
    ],
)
def test_spin_decisions_that_need_no_timing(
    config: OnnxRuntimeConfig, providers: list[str], expected: bool | None
) -> None:
    """on/off as configured; auto: off with one thread or a GPU provider, on for unbounded
    demand, and left to the warm-up's timing when the cameras have a finite rate."""
    decided = spin_untimed(config, providers)
    assert (None if decided is None else decided[0]) is expected


def test_spin_timed_is_on_only_when_the_engine_would_be_busy() -> None:
    """30 fps of 30 ms runs is 90 % busy: spin; 10 fps of 25 ms is 25 %: do not; untimed: off."""
    assert spin_timed(30.0, 30.0)[0] is True
    on, why = spin_timed(10.0, 25.0)
    assert on is False and "25% busy" in why
    assert spin_timed(10.0, None) == (False, "no warm-up run to time")


@pytest.mark.parametrize(("fps", "spins"), [(1.0, False), (10_000.0, True)])
def test_auto_spin_is_set_on_the_session_from_the_warm_run(
    demo_model: Path, fps: float, spins: bool
) -> None:
    """spin: auto with 2 threads: 1 fps leaves the engine idle (off), 10,000 fps keeps it busy
    (on, the session opened again); both keys are set on the real session and logged."""
    eng = OnnxRuntimeEngine(OnnxRuntimeConfig(threads=2, expected_fps=fps))
    with capture_logs() as logs:
        eng.load(demo_model)
    try:
        options = eng.session.get_session_options()
        want = "1" if spins else "0"
        assert [options.get_session_config_entry(k) for k in SPIN_KEYS] == [want, want]
        assert eng.spinning is spins
        loaded = next(e for e in logs if e["event"] == "onnxruntime model loaded")
        assert loaded["spin"] is spins and "busy" in loaded["spin_reason"]
        assert loaded["warm_run_ms"] > 0
        assert eng.infer(np.zeros((1, 3, 320, 320), np.float32))[0].shape == (1, 6, 2100)
    finally:
        eng.close()
