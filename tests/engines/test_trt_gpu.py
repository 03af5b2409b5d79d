"""TensorRT on a real GPU: build from the demo ONNX, load, match ONNX Runtime, int8, free on close.

Skipped (with the reason shown) where TensorRT/pycuda or a CUDA device is missing; they run
unchanged on a Jetson or any machine with an NVIDIA GPU, TensorRT 10 and pycuda.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from agent.engines.base import EngineError
from agent.engines.build import ensure_engine, read_record
from agent.engines.detector import Detector, load_detector
from agent.engines.engine_cache import BuildOptions, sidecar_path
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.trt import TensorRTConfig, TensorRTEngine
from agent.engines.trt_runtime import (
    context_current,
    device_is_integrated,
    import_trt,
    primary_context,
    probe_platform,
    trt_logger,
)
from agent.engines.yolo import box_iou
from agent.types import Detections
from tests.engines.synthetic import constant_output_model

HAS_GPU_STACK = all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "pycuda", "cuda"))
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not HAS_GPU_STACK,
        reason="TensorRT/pycuda/cuda-python not installed: GPU tests need a Jetson or an "
        "NVIDIA GPU",
    ),
]

N_FRAMES = 12


@pytest.fixture(scope="module")
def gpu() -> None:
    """Skip with the reason when TensorRT is installed but no CUDA device answers."""
    try:
        probe_platform(0)
    except EngineError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")


@pytest.fixture(scope="module")
def frames(demo_clip: Path) -> list[npt.NDArray[np.uint8]]:
    """Frames spread over the demo clip."""
    cap = cv2.VideoCapture(str(demo_clip))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 250
    out = []
    for i in np.linspace(0, total - 1, N_FRAMES).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, frame = cap.read()
        if ok:
            out.append(frame)
    cap.release()
    assert len(out) >= N_FRAMES // 2, "could not read frames from the demo clip"
    return out


@pytest.fixture(scope="module")
def ort_detector(demo_model: Path) -> Iterator[Detector]:
    """The reference: the same ONNX model on ONNX Runtime (CPU)."""
    det = load_detector(demo_model, OnnxRuntimeConfig(), conf_threshold=0.25)
    yield det
    det.close()


def trt_detector(engine_path: Path, reference: Detector) -> Detector:
    """A Detector over the TensorRT engine, with the reference's identity and thresholds."""
    engine = TensorRTEngine(TensorRTConfig())
    io = engine.load(engine_path)
    return Detector(engine, io, reference.info, conf_threshold=0.25)


def matched_fraction(ref: Detections, got: Detections, min_conf: float, iou: float) -> float:
    """Share of the reference's confident boxes that `got` has with the same class at >= iou."""
    keep = ref.confidence >= min_conf
    if not keep.any():
        return 1.0
    hits = 0
    for box, cls in zip(ref.xyxy[keep], ref.class_id[keep], strict=True):
        same = got.class_id == cls
        if same.any() and float(box_iou(box, got.xyxy[same]).max()) >= iou:
            hits += 1
    return hits / int(keep.sum())


def test_fp16_build_matches_onnxruntime(
    gpu: None,
    tmp_path: Path,
    demo_model: Path,
    frames: list[npt.NDArray[np.uint8]],
    ort_detector: Detector,
) -> None:
    """An fp16 engine built from the demo ONNX finds what ONNX Runtime finds on the same frames."""
    path = ensure_engine(demo_model, BuildOptions(precision="fp16"), tmp_path / "cache")
    assert read_record(sidecar_path(path)).identity.precision == "fp16"
    det = trt_detector(path, ort_detector)
    try:
        fractions = []
        confident = 0
        for frame in frames:
            ref, _ = ort_detector.detect(frame)
            got, _ = det.detect(frame)
            confident += int((ref.confidence >= 0.4).sum())
            fractions.append(matched_fraction(ref, got, min_conf=0.4, iou=0.85))
    finally:
        det.close()
    assert confident > 0, "the reference found nothing confident: the comparison would be empty"
    assert min(fractions) >= 0.9, fractions


def test_dynamic_batch_engine_runs_1_to_max_frames_like_single_calls(
    gpu: None,
    tmp_path: Path,
    demo_model: Path,
    frames: list[npt.NDArray[np.uint8]],
    ort_detector: Detector,
) -> None:
    """A dynamic-batch ONNX built with max_batch 4: every batch size 1..4 gives each row what
    the same engine gives that frame alone (profile 1..4, `set_input_shape` per call)."""
    import onnx

    from agent.engines.yolo import Letterboxer
    from tests.test_batching import _recipe

    model = onnx.load(str(demo_model))
    _recipe().free_batch(model)
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save(model, str(dynamic))
    path = ensure_engine(dynamic, BuildOptions(precision="fp16", max_batch=4), tmp_path / "c")
    assert read_record(sidecar_path(path)).identity.max_batch == 4
    engine = TensorRTEngine(TensorRTConfig(max_batch=4))
    io = engine.load(path)
    try:
        assert io.inputs[0].shape[0] == -1 and io.max_batch == 4
        tensors = [Letterboxer((320, 320))(f)[0].copy() for f in frames[:4]]
        alone = [engine.infer(t)[0] for t in tensors]
        for n in (4, 2, 3, 1):
            rows = engine.infer(np.concatenate(tensors[:n]))[0]
            assert rows.shape[0] == n
            for k in range(n):
                np.testing.assert_allclose(rows[k], alone[k][0], atol=1e-2)
        with pytest.raises(EngineError, match="batch 1..4"):
            engine.infer(np.concatenate(tensors + tensors[:1]))
    finally:
        engine.close()


def test_raw_outputs_close_to_onnxruntime(
    gpu: None,
    tmp_path: Path,
    demo_model: Path,
    frames: list[npt.NDArray[np.uint8]],
    ort_detector: Detector,
) -> None:
    """fp32 engine outputs equal ONNX Runtime's within a small tolerance."""
    path = ensure_engine(demo_model, BuildOptions(precision="fp32"), tmp_path / "cache")
    engine = TensorRTEngine(TensorRTConfig())
    io = engine.load(path)
    try:
        from agent.engines.yolo import letterbox

        tensor, _ = letterbox(frames[0], ort_detector.info.input_size)
        ref = ort_detector.engine.infer(tensor)
        got = engine.infer(tensor)
    finally:
        engine.close()
    assert [o.shape for o in io.outputs] == [r.shape for r in ref]
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, atol=2e-2, rtol=1e-2)


def test_int8_with_calibration(
    gpu: None,
    tmp_path: Path,
    demo_model: Path,
    frames: list[npt.NDArray[np.uint8]],
    ort_detector: Detector,
) -> None:
    """An int8 engine calibrated on clip frames still finds most confident detections."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(calib / f"{i:03d}.jpg"), frame)
    path = ensure_engine(
        demo_model, BuildOptions(precision="int8", calib_images=calib), tmp_path / "cache"
    )
    rec = read_record(sidecar_path(path))
    assert rec.identity.precision == "int8" and rec.identity.calibration_sha256
    assert any(
        p.name.endswith(".cache") and "calib" in p.name for p in (tmp_path / "cache").iterdir()
    )
    det = trt_detector(path, ort_detector)
    try:
        fractions = [
            matched_fraction(ort_detector.detect(f)[0], det.detect(f)[0], min_conf=0.5, iou=0.5)
            for f in frames
        ]
    finally:
        det.close()
    assert any(int((ort_detector.detect(f)[0].confidence >= 0.5).sum()) for f in frames)
    assert float(np.mean(fractions)) >= 0.7, fractions


def test_close_frees_gpu_memory(gpu: None, tmp_path: Path, demo_model: Path) -> None:
    """Repeated load/infer/close cycles do not leak device memory."""
    import pycuda.driver as cuda

    path = ensure_engine(demo_model, BuildOptions(precision="fp16"), tmp_path / "cache")
    cuda.init()
    probe_ctx = cuda.Device(0).make_context()
    try:
        free_before = cuda.mem_get_info()[0]
    finally:
        cuda.Context.pop()
    try:
        for _ in range(5):
            engine = TensorRTEngine(TensorRTConfig())
            io = engine.load(path)
            engine.infer(np.zeros(io.inputs[0].shape, dtype=np.float32))
            engine.close()
            assert not engine.loaded
            engine.close()  # twice is safe
        probe_ctx.push()
        try:
            free_after = cuda.mem_get_info()[0]
        finally:
            cuda.Context.pop()
    finally:
        probe_ctx.detach()
    assert free_before - free_after < 64 << 20, (free_before, free_after)


def test_engine_from_other_platform_is_refused(gpu: None, tmp_path: Path, demo_model: Path) -> None:
    """An engine whose sidecar names another TensorRT version is refused at load, not run."""
    path = ensure_engine(demo_model, BuildOptions(precision="fp16"), tmp_path / "cache")
    side = sidecar_path(path)
    rec = read_record(side)
    other = rec.model_copy(
        update={"identity": rec.identity.model_copy(update={"tensorrt_version": "8.6.2"})}
    )
    side.write_text(other.model_dump_json(by_alias=True))
    with pytest.raises(EngineError, match="built for another platform"):
        TensorRTEngine(TensorRTConfig()).load(path)


def test_daemon_path_onnx_model_with_cached_engine(
    gpu: None, tmp_path: Path, demo_model: Path, frames: list[npt.NDArray[np.uint8]]
) -> None:
    """load_detector(model.onnx, tensorrt) runs the cached engine, checked against the manifest."""
    from agent.engines.model_loading import load_manifest

    cfg = TensorRTConfig(precision="fp16", cache_dir=tmp_path / "cache")
    with pytest.raises(EngineError, match="edge-agent engine build"):
        load_detector(demo_model, cfg)  # nothing cached yet: told what to run, nothing built
    ensure_engine(demo_model, BuildOptions.from_config(cfg), cfg.cache_dir)
    manifest = load_manifest(demo_model.with_name("manifest.json"))
    det = load_detector(demo_model, cfg, manifest=manifest)
    try:
        dets, timings = det.detect(frames[0])
        assert timings.infer > 0 and len(dets.class_id) >= 0
    finally:
        det.close()


T = TypeVar("T")


def on_new_thread(fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread (as the pipeline, OTA and swap threads do); its result."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def device_free_bytes() -> int:
    """Free device memory, read inside the process's primary context."""
    _, cuda = import_trt()
    with context_current(cuda, primary_context(cuda, 0)):
        return int(cuda.mem_get_info()[0])


def test_swaps_across_threads_leak_no_context(gpu: None, tmp_path: Path, demo_model: Path) -> None:
    """Load on thread A, infer on B, close on C, 50 times: device memory back to baseline."""
    path = ensure_engine(demo_model, BuildOptions(precision="fp16"), tmp_path / "cache")

    def cycle() -> None:
        engine = TensorRTEngine(TensorRTConfig())
        io = on_new_thread(lambda: engine.load(path))
        on_new_thread(lambda: engine.infer(np.zeros(io.inputs[0].shape, dtype=np.float32)))
        on_new_thread(engine.close)
        assert not engine.loaded

    cycle()  # TensorRT loads its kernels and libraries once per process
    baseline = device_free_bytes()
    for _ in range(50):
        cycle()
    leaked = baseline - device_free_bytes()
    assert leaked < 64 << 20, f"{leaked >> 20} MiB not returned after 50 swaps"


def test_primary_context_blocks_instead_of_spinning(
    gpu: None, tmp_path: Path, demo_model: Path
) -> None:
    """The engine's context waits for the GPU with blocking sync (no core spinning on Tegra)."""
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver
    path = ensure_engine(demo_model, BuildOptions(precision="fp16"), tmp_path / "cache")
    engine = TensorRTEngine(TensorRTConfig())
    engine.load(path)
    try:
        err, dev = driver.cuDeviceGet(0)
        assert err == driver.CUresult.CUDA_SUCCESS
        err, flags, active = driver.cuDevicePrimaryCtxGetState(dev)
        assert err == driver.CUresult.CUDA_SUCCESS and active
        assert flags & int(driver.CUctx_flags.CU_CTX_SCHED_BLOCKING_SYNC)
    finally:
        engine.close()


def test_zero_copy_exactly_on_integrated_gpus(gpu: None, tmp_path: Path, demo_model: Path) -> None:
    """Mapped pinned buffers on an integrated GPU (Jetson), device buffers on a discrete one."""
    _, cuda = import_trt()
    path = ensure_engine(demo_model, BuildOptions(precision="fp16"), tmp_path / "cache")
    engine = TensorRTEngine(TensorRTConfig())
    io = engine.load(path)
    try:
        assert engine.zero_copy is device_is_integrated(cuda, 0)
        out = engine.infer(np.zeros(io.inputs[0].shape, dtype=np.float32))
        assert all(np.isfinite(o).all() for o in out)
    finally:
        engine.close()


def build_dynamic_engine(onnx_path: Path, out: Path) -> Path:
    """An engine with a dynamic batch and size, profile opt at batch 16 (as Ultralytics')."""
    trt, cuda = import_trt()
    with context_current(cuda, primary_context(cuda, 0)):
        builder = trt.Builder(trt_logger(trt))
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, trt_logger(trt))
        assert parser.parse_from_file(str(onnx_path))
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        profile.set_shape("images", (1, 3, 32, 32), (16, 3, 64, 64), (16, 3, 128, 128))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        assert plan is not None
        out.write_bytes(bytes(plan))
        del parser, network, config, builder, plan
    return out


def test_dynamic_engine_runs_batch_one_at_the_manifest_size(gpu: None, tmp_path: Path) -> None:
    """A dynamic engine is sized for batch 1 and the manifest's H x W, not the profile's opt."""
    boxes = np.zeros((1, 6, 8), dtype=np.float32)
    onnx_path = constant_output_model(
        tmp_path / "dyn.onnx", boxes, input_shape=("batch", 3, "height", "width")
    )
    path = build_dynamic_engine(onnx_path, tmp_path / "dyn.engine")
    engine = TensorRTEngine(TensorRTConfig(warmup_runs=1), input_hw=(96, 64))
    try:
        io = engine.load(path)
        assert io.inputs[0].shape == (1, 3, 96, 64)
        assert engine.infer(np.zeros((1, 3, 96, 64), dtype=np.float32))[0].shape == (1, 6, 8)
    finally:
        engine.close()
