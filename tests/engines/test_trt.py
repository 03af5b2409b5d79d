"""TensorRT backend parts that need no GPU: header parsing, refusals before any CUDA call."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.engines.base import Engine, EngineError
from agent.engines.registry import create_engine
from agent.engines.trt import TensorRTConfig, TensorRTEngine, split_ultralytics_header

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def with_header(meta: dict[str, object], plan: bytes) -> bytes:
    """An Ultralytics-style engine file: int32 length, JSON metadata, plan."""
    raw = json.dumps(meta).encode()
    return len(raw).to_bytes(4, "little", signed=True) + raw + plan


@pytest.mark.parametrize(
    ("blob", "meta", "plan"),
    [
        (
            with_header({"names": {"0": "person"}, "imgsz": [320, 320]}, b"PLAN"),
            {"names": '{"0": "person"}', "imgsz": "[320, 320]"},
            b"PLAN",
        ),  # Ultralytics export
        (with_header({"stride": "32"}, b""), {"stride": "32"}, b""),  # string values kept as is
        (b"ftrt\x00\x00\x00\x00PLANDATA", {}, b"ftrt\x00\x00\x00\x00PLANDATA"),  # plain plan
        (b"\x10\x00\x00\x00{not json at all", {}, b"\x10\x00\x00\x00{not json at all"),  # bad JSON
        (b"\xff\xff\xff\x7f{", {}, b"\xff\xff\xff\x7f{"),  # length beyond the file
        (b"ab", {}, b"ab"),  # shorter than a length prefix
        (with_header([1, 2], b"P"), {}, with_header([1, 2], b"P")),  # JSON but not an object
    ],
)
def test_split_ultralytics_header(blob: bytes, meta: dict[str, str], plan: bytes) -> None:
    """The metadata prefix is split off when present and valid; otherwise the blob is the plan."""
    assert split_ultralytics_header(blob) == (meta, plan)


def test_engine_satisfies_protocol() -> None:
    """The registry builds a TensorRTEngine that implements the Engine protocol."""
    engine = create_engine(TensorRTConfig())
    assert isinstance(engine, TensorRTEngine) and isinstance(engine, Engine)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_onnx_path_without_tensorrt(demo_model: Path, tmp_path: Path) -> None:
    """An ONNX path is looked up in the engine cache, which needs TensorRT to identify the GPU."""
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        TensorRTEngine(TensorRTConfig(cache_dir=tmp_path)).load(demo_model)


def test_missing_engine_file(tmp_path: Path) -> None:
    """A missing engine file is a clear error."""
    with pytest.raises(EngineError, match="engine file not found"):
        TensorRTEngine(TensorRTConfig()).load(tmp_path / "m.engine")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_load_without_tensorrt(tmp_path: Path) -> None:
    """Without TensorRT, load fails with 'TensorRT is not installed' and leaves nothing open."""
    path = tmp_path / "m.engine"
    path.write_bytes(b"plan")
    engine = TensorRTEngine(TensorRTConfig())
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        engine.load(path)
    assert not engine.loaded
    engine.close()  # safe after a failed load


def test_infer_before_load() -> None:
    """infer() on an engine that is not loaded is an EngineError."""
    import numpy as np

    with pytest.raises(EngineError, match="not loaded"):
        TensorRTEngine(TensorRTConfig()).infer(np.zeros((1, 3, 32, 32), dtype=np.float32))


def test_close_twice_without_load() -> None:
    """close() is safe on an engine that never loaded, twice."""
    engine = TensorRTEngine(TensorRTConfig())
    engine.close()
    engine.close()
    assert not engine.loaded


def test_import_has_no_gpu_side_effects() -> None:
    """Importing the backend and builder imports neither tensorrt nor pycuda."""
    code = (
        "import sys, agent.engines.trt, agent.engines.build, agent.engines.build_cli; "
        "print(sorted(m for m in ('tensorrt', 'pycuda', 'pycuda.autoinit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
