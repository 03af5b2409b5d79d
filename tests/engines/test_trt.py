"""TensorRT backend parts that need no GPU: header parsing, refusals before any CUDA call."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.engines.base import Engine, EngineError
from agent.engines.detector import load_detector
from agent.engines.engine_cache import uses_calibration_profile
from agent.engines.model_loading import ModelMetadataError, parse_names
from agent.engines.registry import create_engine
from agent.engines.trt import (
    TensorRTConfig,
    TensorRTEngine,
    batch_of,
    resolve_input_shape,
    split_ultralytics_header,
)

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


# -- Ultralytics engine headers (JSON: `names` has string keys) -----------------------------

ULTRALYTICS_META = {
    "description": "Ultralytics YOLOv8n model",
    "stride": 32,
    "task": "detect",
    "batch": 1,
    "imgsz": [320, 320],
    "names": {"0": "person", "1": "bicycle", "2": "car"},
}


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ('{"0": "person", "1": "car"}', ("person", "car")),  # JSON header of an .engine file
        ("{0: 'person', 1: 'car'}", ("person", "car")),  # ONNX metadata (a Python dict repr)
        ("['person', 'car']", ("person", "car")),  # a plain list
    ],
)
def test_parse_names_accepts_string_and_int_keys(raw: str, names: tuple[str, ...]) -> None:
    """Class names parse whether the indices are ints (ONNX) or decimal strings (JSON)."""
    assert parse_names(raw) == names


@pytest.mark.parametrize(
    "raw",
    [
        '{"0": "person", "2": "car"}',  # a gap
        "{0: 'person', '0': 'car'}",  # the same index twice
        "{'a': 'person'}",  # not an index
        "{0: 'person', 'x': 'car'}",  # mixed keys (used to raise TypeError from sorted())
        '{"0": 7}',  # not a string
    ],
)
def test_parse_names_rejects(raw: str) -> None:
    """Names that do not map 0..n-1 to strings are a ModelMetadataError, whatever the keys."""
    with pytest.raises(ModelMetadataError):
        parse_names(raw)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_ultralytics_engine_reaches_tensorrt(tmp_path: Path) -> None:
    """An Ultralytics .engine gets through header and name parsing and stops at TensorRT."""
    path = tmp_path / "yolov8n.engine"
    path.write_bytes(with_header(ULTRALYTICS_META, b"ftrt-plan-bytes"))
    with pytest.raises(EngineError, match="TensorRT is not installed") as info:
        load_detector(path, TensorRTConfig())
    assert not isinstance(info.value, ModelMetadataError)


def test_bad_header_names_fail_before_tensorrt(tmp_path: Path) -> None:
    """Header metadata is parsed before TensorRT is touched: bad names fail as metadata."""
    path = tmp_path / "broken.engine"
    path.write_bytes(with_header({**ULTRALYTICS_META, "names": {"0": "a", "5": "b"}}, b"plan"))
    with pytest.raises(ModelMetadataError, match="must map 0..n-1"):
        load_detector(path, TensorRTConfig())


# -- dynamic shapes: the batch actually run and the model's size, never the profile's opt --

PROFILE = ((1, 3, 32, 32), (32, 3, 1280, 1280))  # (min, max) of an Ultralytics dynamic export


@pytest.mark.parametrize(
    ("engine_shape", "profile", "input_hw", "expected"),
    [
        ((1, 3, 320, 320), None, None, (1, 3, 320, 320)),  # static engine: as built
        ((-1, 3, -1, -1), PROFILE, (320, 320), (1, 3, 320, 320)),  # batch 1, manifest H x W
        ((-1, 3, -1, -1), PROFILE, (384, 640), (1, 3, 384, 640)),  # non-square
        ((-1, 3, 640, 640), ((1, 3, 640, 640), (16, 3, 640, 640)), None, (1, 3, 640, 640)),
        ((1, -1, 320, 320), ((1, 1, 320, 320), (1, 4, 320, 320)), None, (1, 3, 320, 320)),
    ],
)
def test_resolve_input_shape(
    engine_shape: tuple[int, ...],
    profile: tuple[tuple[int, ...], tuple[int, ...]] | None,
    input_hw: tuple[int, int] | None,
    expected: tuple[int, ...],
) -> None:
    """Dynamic dimensions become batch 1 and the model's H x W."""
    assert resolve_input_shape(engine_shape, profile, input_hw) == expected


@pytest.mark.parametrize(
    ("engine_shape", "profile", "input_hw", "match"),
    [
        ((-1, 3, -1, -1), PROFILE, None, "dynamic size"),  # no manifest, no imgsz
        ((-1, 3, -1, -1), ((1, 3, 32, 32), (8, 3, 320, 320)), (640, 640), "outside"),
        ((2, 3, -1, -1), ((2, 3, 32, 32), (2, 3, 640, 640)), (320, 320), None),  # fixed batch 2
        ((1, 3, 320), None, None, "expected"),  # not 4-D
    ],
)
def test_resolve_input_shape_refuses(
    engine_shape: tuple[int, ...],
    profile: tuple[tuple[int, ...], tuple[int, ...]] | None,
    input_hw: tuple[int, int] | None,
    match: str | None,
) -> None:
    """Unknown sizes and shapes outside the profile are refused; a fixed batch is kept."""
    if match is None:
        assert resolve_input_shape(engine_shape, profile, input_hw)[0] == 2
        return
    with pytest.raises(EngineError, match=match):
        resolve_input_shape(engine_shape, profile, input_hw)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("10.3.0.30", False), ("10.0.1", False), ("11.0", False), ("8.6.2", True), ("x", False)],
)
def test_calibration_profile_skipped_on_tensorrt_10(version: str, expected: bool) -> None:
    """set_calibration_profile is used only before TensorRT 10 (deprecated there)."""
    assert uses_calibration_profile(version) is expected


# -- batches of a dynamic-batch engine (allocated for its largest batch) --------------------
LOADED = (4, 3, 320, 320)


@pytest.mark.parametrize(
    ("shape", "dynamic", "expected"),
    [
        ((1, 3, 320, 320), True, 1),  # one camera's frame in an engine built for 4
        ((3, 3, 320, 320), True, 3),
        ((4, 3, 320, 320), True, 4),
        ((4, 3, 320, 320), False, 4),  # a static engine takes exactly its batch
        ((5, 3, 320, 320), True, None),  # above the profile
        ((0, 3, 320, 320), True, None),
        ((1, 3, 320, 320), False, None),
        ((2, 3, 640, 640), True, None),  # another image size
    ],
)
def test_batch_of_a_call(shape, dynamic, expected) -> None:  # noqa: ANN001
    """A dynamic batch axis takes 1..max frames, a static one its own batch only."""
    if expected is None:
        with pytest.raises(EngineError, match="engine input"):
            batch_of(shape, LOADED, dynamic)
    else:
        assert batch_of(shape, LOADED, dynamic) == expected
