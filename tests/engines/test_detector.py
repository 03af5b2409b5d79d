"""Detector and load_detector on real ONNX models: the demo YOLO and synthetic graphs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.contracts.manifest import Manifest
from agent.engines.base import EngineError
from agent.engines.detector import Detector, load_detector
from agent.engines.model_loading import (
    ModelMetadataError,
    file_sha256,
    load_manifest,
    parse_imgsz,
    parse_names,
)
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.yolo import Layout
from tests.engines.synthetic import (
    E2E_OUT,
    EXPECTED_CLASS,
    EXPECTED_CONF,
    EXPECTED_XYXY,
    FRAME_HW,
    V5_OUT,
    V8_OUT,
    constant_output_model,
    ultralytics_metadata,
)

CPU = OnnxRuntimeConfig(threads=1, warmup_runs=1)
NAMES = ["person", "car"]


def make_manifest(path: Path, **overrides: object) -> Manifest:
    """A manifest describing the model file at `path` (overridable field by field)."""
    fields: dict[str, object] = {
        "name": "synthetic",
        "version": 3,
        "format": "onnx",
        "sha256": file_sha256(path),
        "length": path.stat().st_size,
        "input_size": (64, 64),
        "class_names": NAMES,
        "created": "2026-01-01T00:00:00Z",
    }
    fields.update(overrides)
    return Manifest.model_validate(fields)


@pytest.fixture(scope="module")
def clip_frames(demo_clip: Path) -> list[np.ndarray]:
    """Five (576, 768, 3) BGR frames spread over the demo clip."""
    cap = cv2.VideoCapture(str(demo_clip))
    frames = []
    for i in range(200):
        ok, frame = cap.read()
        assert ok, f"clip ended at frame {i}"
        if i % 40 == 0:
            frames.append(frame)
    cap.release()
    return frames


# --------------------------------------------------------------------------- demo model


def test_demo_model_with_manifest(demo_model):
    """Identity comes from the manifest, checked against the file's sha256 and the network."""
    manifest = load_manifest(demo_model.parent / "manifest.json")
    with load_detector(demo_model, CPU, manifest=manifest) as det:
        assert det.info.sha256 == hashlib.sha256(demo_model.read_bytes()).hexdigest()
        assert (det.info.name, det.info.version) == (manifest.name, manifest.version)
        assert det.info.class_names == ("person", "car")
        assert det.info.input_size == tuple(manifest.input_size)
        assert det.layout is Layout.V8


def test_demo_model_without_manifest_uses_ultralytics_metadata(demo_model):
    """Without a manifest, names and input size come from the ONNX metadata."""
    with load_detector(demo_model, CPU) as det:
        assert det.info.class_names == ("person", "car")
        assert det.info.input_size == (320, 320)
        assert (det.info.name, det.info.version) == ("model", 0)


def test_detect_on_clip_frames(demo_model, clip_frames):
    """detect returns Detections inside the frame and positive stage timings."""
    with load_detector(demo_model, CPU, conf_threshold=0.01) as det:
        for frame in clip_frames:
            dets, timings = det.detect(frame)
            assert np.all(dets.xyxy[:, 0::2] <= frame.shape[1]) and np.all(dets.xyxy >= 0)
            assert np.all(dets.xyxy[:, 1::2] <= frame.shape[0])
            assert np.all(dets.confidence > 0.01) and len(dets) <= 100
            assert np.all((dets.class_id >= 0) & (dets.class_id < 2))
            assert timings.pre > 0 and timings.infer > 0 and timings.post > 0


def test_stage_timings_come_from_the_clock(demo_model, clip_frames):
    """pre, infer and post are the clock's steps around letterbox, run and decode, in ms."""
    ticks = iter([10.0, 10.5, 12.5, 12.75])  # seconds: pre 0.5 s, infer 2 s, post 0.25 s
    with load_detector(demo_model, CPU) as loaded:
        det = Detector(loaded.engine, loaded.io, loaded.info, clock=lambda: next(ticks))
        _, timings = det.detect(clip_frames[0])
    assert (timings.pre, timings.infer, timings.post) == (500.0, 2000.0, 250.0)
    assert timings.total == 2750.0


def test_detector_close_is_idempotent_and_detect_after_close_fails(demo_model, clip_frames):
    """close() twice is fine; detect on a closed detector is a clear error."""
    det = load_detector(demo_model, CPU)
    det.close()
    det.close()
    with pytest.raises(EngineError, match="closed"):
        det.detect(clip_frames[0])


# --------------------------------------------------------------------------- synthetic layouts


@pytest.mark.parametrize(
    ("output", "end2end"),
    [
        (V8_OUT, False),  # YOLOv8/11 [1, 4+nc, N]
        (V5_OUT, False),  # YOLOv5 [1, N, 5+nc]
        (E2E_OUT, True),  # YOLOv10/26 [1, K, 6], flagged end2end in metadata
    ],
)
def test_each_layout_end_to_end(tmp_path, output, end2end):
    """A real ONNX model of each layout yields the literal boxes in frame pixels."""
    path = constant_output_model(
        tmp_path / "m.onnx", output, metadata=ultralytics_metadata(NAMES, end2end=end2end)
    )
    image = np.zeros((*FRAME_HW, 3), dtype=np.uint8)
    with load_detector(path, CPU) as det:
        dets, _ = det.detect(image)
    np.testing.assert_allclose(dets.xyxy, EXPECTED_XYXY, atol=1e-3)
    np.testing.assert_allclose(dets.confidence, EXPECTED_CONF, atol=1e-6)
    np.testing.assert_array_equal(dets.class_id, EXPECTED_CLASS)


def test_thresholds_come_from_the_caller(tmp_path):
    """conf_threshold and max_detections given to the loader apply to detect."""
    path = constant_output_model(tmp_path / "m.onnx", V8_OUT, metadata=ultralytics_metadata(NAMES))
    image = np.zeros((*FRAME_HW, 3), dtype=np.uint8)
    with load_detector(path, CPU, conf_threshold=0.8) as det:
        assert det.detect(image)[0].confidence.tolist() == pytest.approx([0.9])
    with load_detector(path, CPU, max_detections=1) as det:
        assert len(det.detect(image)[0]) == 1


# --------------------------------------------------------------------------- bad models


@pytest.mark.parametrize(
    ("output", "metadata", "message"),
    [
        # an image classifier: [1, 1000] logits
        (np.zeros((1, 1000)), ultralytics_metadata(NAMES, task="detect"), r"found \[1, 1000\]"),
        # 3 names but the head has 2 classes
        (np.zeros((1, 6, 84)), ultralytics_metadata(["a", "b", "c"]), r"3 names .* has 2 classes"),
        # 3 names and a head too small to guess from: the shapes and the names are named
        (V8_OUT, ultralytics_metadata(["a", "b", "c"]), r"found \[1, 6, 4\].*nc=3.*3 class names"),
        # a segmentation export
        (V8_OUT, ultralytics_metadata(NAMES, task="segment"), "not a detection model"),
        # no class names anywhere
        (V8_OUT, {"imgsz": "[64, 64]"}, "no 'names' metadata"),
        # names that are code, not a literal
        (V8_OUT, {"names": "__import__('os').getcwd()", "imgsz": "[64, 64]"}, "not a literal"),
        # imgsz metadata disagreeing with the network input
        (V8_OUT, ultralytics_metadata(NAMES, (32, 32)), r"input size \(32, 32\) disagrees"),
        # end2end flag on a [1, 4+nc, N] head
        (V8_OUT, ultralytics_metadata(NAMES, end2end=True), r"found \[1, 6, 4\]"),
    ],
)
def test_inconsistent_model_fails_at_load(tmp_path, output, metadata, message):
    """A model whose outputs or metadata do not add up fails at load, saying why."""
    path = constant_output_model(
        tmp_path / "m.onnx", np.asarray(output, np.float32), metadata=metadata
    )
    with pytest.raises(EngineError, match=message):
        load_detector(path, CPU)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sha256": "0" * 64}, "is for sha256 0000"),  # manifest of another file
        ({"class_names": ["person"]}, "manifest lists 1 classes"),  # disagrees with metadata
        ({"input_size": (32, 32)}, r"manifest input size \(32, 32\) disagrees"),  # with imgsz
    ],
)
def test_manifest_disagreeing_with_model_fails_at_load(tmp_path, overrides, message):
    """A manifest that does not describe the model file is refused."""
    path = constant_output_model(tmp_path / "m.onnx", V8_OUT, metadata=ultralytics_metadata(NAMES))
    with pytest.raises(ModelMetadataError, match=message):
        load_detector(path, CPU, manifest=make_manifest(path, **overrides))


def write_build_record(engine: Path, onnx_sha256: str, engine_sha256: str) -> None:
    """The sidecar `<engine>.json` that `agent.engines.build` writes beside every engine."""
    record = {
        "schema": "edge.engine/1",
        "key": "0" * 64,
        "identity": {
            "onnx_sha256": onnx_sha256,
            "tensorrt_version": "10.3.0",
            "gpu_name": "Orin (8 SMs)",
            "compute_capability": "8.7",
            "precision": "fp16",
            "workspace_mib": 1024,
        },
        "engine_file": engine.name,
        "engine_sha256": engine_sha256,
        "engine_length": engine.stat().st_size,
        "onnx_file": "model.onnx",
        "built_at": "2026-01-01T00:00:00Z",
        "build_seconds": 1.0,
    }
    engine.with_name(engine.name + ".json").write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("good", None),  # built from the manifest's ONNX: identity is the ONNX digest
        ("other-onnx", "was built from ONNX sha256 1111"),  # built from another ONNX
        ("changed-engine", "changed since its build record"),  # engine file replaced
        ("none", "build record cannot tie them"),  # no sidecar at all
    ],
)
def test_engine_built_from_manifest_onnx(tmp_path, record, message):
    """An engine file is tied to an ONNX manifest through its build record, or refused."""
    onnx_path = constant_output_model(tmp_path / "model.onnx", V8_OUT)
    manifest = make_manifest(onnx_path)
    # onnxruntime loads by content, so an ONNX file named .engine (other bytes, same graph)
    # stands in for the engine
    engine = constant_output_model(tmp_path / "model-fp16.engine", V8_OUT, metadata={"b": "1"})
    engine_sha = file_sha256(engine)
    assert engine_sha != manifest.sha256
    if record == "good":
        write_build_record(engine, manifest.sha256, engine_sha)
    elif record == "other-onnx":
        write_build_record(engine, "1" * 64, engine_sha)
    elif record == "changed-engine":
        write_build_record(engine, manifest.sha256, "2" * 64)
    if message is None:
        with load_detector(engine, CPU, manifest=manifest) as det:
            assert det.info.sha256 == manifest.sha256
    else:
        with pytest.raises(ModelMetadataError, match=message):
            load_detector(engine, CPU, manifest=manifest)


def test_manifest_names_checked_against_output_shape(tmp_path):
    """Without metadata, a manifest's class count must still fit the output shape."""
    path = constant_output_model(tmp_path / "m.onnx", np.zeros((1, 6, 84), np.float32))
    manifest = make_manifest(path, class_names=["a", "b", "c"])
    with pytest.raises(ModelMetadataError, match=r"3 names .* has 2 classes"):
        load_detector(path, CPU, manifest=manifest)


def test_manifest_alone_is_enough(tmp_path):
    """A model without metadata loads with names and size from its manifest."""
    path = constant_output_model(tmp_path / "m.onnx", V8_OUT)
    with load_detector(path, CPU, manifest=make_manifest(path)) as det:
        assert det.info.class_names == tuple(NAMES) and det.info.version == 3


def test_missing_model_file(tmp_path):
    """A missing model is refused before anything else is tried."""
    with pytest.raises(EngineError, match="model file not found"):
        load_detector(tmp_path / "absent.onnx", CPU)


def test_detector_refuses_empty_class_names(tmp_path, demo_model):
    """A Detector cannot be built without class names."""
    from agent.engines.ort import OnnxRuntimeEngine
    from agent.types import ModelInfo

    engine = OnnxRuntimeEngine(CPU)
    io = engine.load(demo_model)
    with pytest.raises(ModelMetadataError, match="no class names"):
        Detector(engine, io, ModelInfo("m", 0, "0" * 64, (320, 320), ()))
    engine.close()


# --------------------------------------------------------------------------- manifests, metadata


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "manifest not found"),  # no file
        ("{not json", "not valid JSON"),  # broken JSON
        (json.dumps({"name": "x"}), r"invalid: version: Field required"),  # fields missing
        (json.dumps({"name": "Bad/Name"}), r"name: Value error, invalid id"),  # unsafe name
    ],
)
def test_load_manifest_errors(tmp_path, content, message):
    """Unreadable or invalid manifests fail with the reason and field path."""
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelMetadataError, match=message):
        load_manifest(path)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("{0: 'person', 1: 'car'}", ("person", "car")),  # Ultralytics dict literal
        ("{1: 'car', 0: 'person'}", ("person", "car")),  # keys out of order
        ("['a', 'b']", ("a", "b")),  # list literal
    ],
)
def test_parse_names(raw, names):
    """Ultralytics names literals parse to an ordered tuple."""
    assert parse_names(raw) == names


@pytest.mark.parametrize(
    "raw",
    [
        "__import__('os').system('true')",  # code is never evaluated
        "{0: 'a', 2: 'c'}",  # a gap in the indices
        "{0: 1}",  # not a string label
        "{}",  # empty
        "{0: 'a'",  # syntax error
    ],
)
def test_parse_names_rejects(raw):
    """Anything but a 0..n-1 -> str literal is refused."""
    with pytest.raises(ModelMetadataError):
        parse_names(raw)


@pytest.mark.parametrize(
    ("raw", "hw"),
    [("[320, 320]", (320, 320)), ("[384, 640]", (384, 640)), ("640", (640, 640))],
)
def test_parse_imgsz(raw, hw):
    """imgsz metadata parses to (H, W)."""
    assert parse_imgsz(raw) == hw


@pytest.mark.parametrize("raw", ["[0, 320]", "[320]", "'big'", "[True, 3]"])
def test_parse_imgsz_rejects(raw):
    """imgsz that is not two positive integers is refused."""
    with pytest.raises(ModelMetadataError):
        parse_imgsz(raw)
