"""ensure_engine on real files, the GPU builder replaced (no GPU here): build, reuse, rebuild."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.engines.base import EngineError
from agent.engines.build import ensure_engine, find_cached_engine, prepare_model, read_record
from agent.engines.engine_cache import (
    BuildArgsError,
    BuildJob,
    BuildOptions,
    Platform,
    sidecar_path,
)
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.trt import TensorRTConfig

ORIN = Platform(tensorrt_version="10.3.0", gpu_name="Orin (8 SMs)", compute_capability="8.7")
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


class FakeGpuBuilder:
    """Stands in for TensorRT's builder (no GPU here): records jobs, returns plan bytes."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.jobs: list[BuildJob] = []
        self.delay_s = delay_s
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, job: BuildJob) -> bytes:
        with self._lock:
            self.jobs.append(job)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise EngineError("builder ran out of memory")
        return f"plan:{job.options.precision}:{len(self.jobs)}".encode() * 100


@pytest.fixture
def onnx(tmp_path: Path, demo_model: Path) -> Path:
    """A private copy of the demo ONNX model."""
    dst = tmp_path / "model.onnx"
    shutil.copyfile(demo_model, dst)
    return dst


def test_first_call_builds_and_records(onnx: Path, tmp_path: Path) -> None:
    """A cold cache builds once and writes the engine plus a sidecar describing it."""
    builder = FakeGpuBuilder()
    path = ensure_engine(
        onnx, BuildOptions(precision="fp16"), tmp_path / "c", platform=ORIN, build_fn=builder
    )
    assert len(builder.jobs) == 1
    rec = read_record(sidecar_path(path))
    assert rec.engine_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec.identity.tensorrt_version == "10.3.0" and rec.identity.precision == "fp16"
    assert rec.identity.onnx_sha256 == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert rec.onnx_metadata["names"] == "{0: 'person', 1: 'car'}"


def test_second_call_loads_from_cache(onnx: Path, tmp_path: Path) -> None:
    """A valid cached engine is reused without building."""
    builder = FakeGpuBuilder()
    first = ensure_engine(
        onnx, BuildOptions(precision="fp16"), tmp_path / "c", platform=ORIN, build_fn=builder
    )
    second = ensure_engine(
        onnx, BuildOptions(precision="fp16"), tmp_path / "c", platform=ORIN, build_fn=builder
    )
    assert first == second and len(builder.jobs) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"platform": ORIN.model_copy(update={"tensorrt_version": "10.7.0"})},  # JetPack upgrade
        {"platform": ORIN.model_copy(update={"gpu_name": "Orin (16 SMs)"})},  # cache moved to AGX
        {"options": BuildOptions(precision="fp16", workspace_mib=256)},  # builder option
    ],
)
def test_mismatch_rebuilds_in_place(onnx: Path, tmp_path: Path, change: dict[str, object]) -> None:
    """A changed platform or option rebuilds into the same slot and rewrites the sidecar."""
    builder = FakeGpuBuilder()
    kwargs: dict[str, object] = {"platform": ORIN, "options": BuildOptions(precision="fp16")}
    first = ensure_engine(onnx, cache_dir=tmp_path / "c", build_fn=builder, **kwargs)  # type: ignore[arg-type]
    kwargs.update(change)
    second = ensure_engine(onnx, cache_dir=tmp_path / "c", build_fn=builder, **kwargs)  # type: ignore[arg-type]
    assert first == second and len(builder.jobs) == 2
    rec = read_record(sidecar_path(second))
    assert rec.engine_sha256 == hashlib.sha256(second.read_bytes()).hexdigest()


def test_truncated_engine_rebuilds(onnx: Path, tmp_path: Path) -> None:
    """An engine file cut short (e.g. power loss while copying) is rebuilt, never loaded."""
    builder = FakeGpuBuilder()
    path = ensure_engine(
        onnx, BuildOptions(precision="fp16"), tmp_path / "c", platform=ORIN, build_fn=builder
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ensure_engine(
        onnx, BuildOptions(precision="fp16"), tmp_path / "c", platform=ORIN, build_fn=builder
    )
    assert len(builder.jobs) == 2
    assert (
        read_record(sidecar_path(path)).engine_sha256
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )


def test_corrupt_sidecar_rebuilds(onnx: Path, tmp_path: Path) -> None:
    """A damaged sidecar means rebuild."""
    builder = FakeGpuBuilder()
    path = ensure_engine(
        onnx, BuildOptions(precision="fp16"), tmp_path / "c", platform=ORIN, build_fn=builder
    )
    sidecar_path(path).write_text("{not json")
    ensure_engine(
        onnx, BuildOptions(precision="fp16"), tmp_path / "c", platform=ORIN, build_fn=builder
    )
    assert len(builder.jobs) == 2


def test_force_rebuilds_on_hit(onnx: Path, tmp_path: Path) -> None:
    """--force rebuilds a valid cached engine."""
    builder = FakeGpuBuilder()
    for force in (False, True):
        ensure_engine(
            onnx,
            BuildOptions(precision="fp16"),
            tmp_path / "c",
            platform=ORIN,
            build_fn=builder,
            force=force,
        )
    assert len(builder.jobs) == 2


def test_failed_build_leaves_no_sidecar(onnx: Path, tmp_path: Path) -> None:
    """A build that fails after an earlier success leaves no sidecar, so nothing stale loads."""
    cache = tmp_path / "c"
    path = ensure_engine(
        onnx, BuildOptions(precision="fp16"), cache, platform=ORIN, build_fn=FakeGpuBuilder()
    )
    newer = ORIN.model_copy(update={"tensorrt_version": "10.7.0"})
    with pytest.raises(EngineError, match="out of memory"):
        ensure_engine(
            onnx,
            BuildOptions(precision="fp16"),
            cache,
            platform=newer,
            build_fn=FakeGpuBuilder(fail=True),
        )
    assert not sidecar_path(path).exists()
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]
    builder = FakeGpuBuilder()
    ensure_engine(onnx, BuildOptions(precision="fp16"), cache, platform=newer, build_fn=builder)
    assert len(builder.jobs) == 1


def test_concurrent_callers_build_once(onnx: Path, tmp_path: Path) -> None:
    """Two callers at once (CLI and daemon) build once; the second waits and reuses it."""
    builder = FakeGpuBuilder(delay_s=0.3)
    results: list[Path] = []

    def call() -> None:
        results.append(
            ensure_engine(
                onnx,
                BuildOptions(precision="fp16"),
                tmp_path / "c",
                platform=ORIN,
                build_fn=builder,
            )
        )

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 2 and results[0] == results[1]
    assert len(builder.jobs) == 1


def write_frames(folder: Path, n: int) -> None:
    """n small real JPEG frames."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(
            str(folder / f"f{i:03d}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        )


def test_int8_job_and_calibration_change(onnx: Path, tmp_path: Path) -> None:
    """int8 passes the frames and a keyed calibration cache; a changed frame rebuilds."""
    frames = tmp_path / "frames"
    write_frames(frames, 3)
    builder = FakeGpuBuilder()
    opts = BuildOptions(precision="int8", calib_images=frames, calib_max_images=2)
    path = ensure_engine(onnx, opts, tmp_path / "c", platform=ORIN, build_fn=builder)
    job = builder.jobs[0]
    assert [p.name for p in job.calib_files] == ["f000.jpg", "f001.jpg"]
    assert job.calib_cache is not None and "calib-" in job.calib_cache.name
    assert read_record(sidecar_path(path)).identity.calibration_sha256 is not None
    ensure_engine(onnx, opts, tmp_path / "c", platform=ORIN, build_fn=builder)
    assert len(builder.jobs) == 1  # unchanged set: cache hit
    cv2.imwrite(str(frames / "f001.jpg"), np.zeros((48, 64, 3), dtype=np.uint8))
    ensure_engine(onnx, opts, tmp_path / "c", platform=ORIN, build_fn=builder)
    assert len(builder.jobs) == 2


def test_invalid_request_fails_before_gpu(tmp_path: Path) -> None:
    """Argument problems are reported before TensorRT is even looked for."""
    with pytest.raises(BuildArgsError) as info:
        ensure_engine(tmp_path / "nope.onnx", BuildOptions(precision="int8"), tmp_path / "c")
    assert any("file not found" in p for p in info.value.problems)
    assert any("--calib-images" in p for p in info.value.problems)


def test_corrupt_onnx_is_refused(tmp_path: Path) -> None:
    """A truncated ONNX file is an EngineError, not a crash inside the builder."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 3)
    with pytest.raises(EngineError, match="not a valid ONNX model"):
        ensure_engine(
            bad,
            BuildOptions(precision="fp16"),
            tmp_path / "c",
            platform=ORIN,
            build_fn=FakeGpuBuilder(),
        )


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_without_tensorrt_says_so(onnx: Path, tmp_path: Path) -> None:
    """On a machine without TensorRT a real build fails with a clear message."""
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        ensure_engine(onnx, BuildOptions(precision="fp16"), tmp_path / "c")


def test_prepare_model_onnxruntime_needs_no_tensorrt(onnx: Path, tmp_path: Path) -> None:
    """With the onnxruntime backend the ONNX file is used as is: no build, no TensorRT."""
    assert prepare_model(OnnxRuntimeConfig(), onnx) == onnx
    assert list(tmp_path.iterdir()) == [onnx]


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_prepare_model_tensorrt_builds(onnx: Path, tmp_path: Path) -> None:
    """With the tensorrt backend an ONNX model goes through the builder (absent here)."""
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        prepare_model(TensorRTConfig(cache_dir=tmp_path / "c"), onnx)


def test_find_cached_engine_hit_and_miss(onnx: Path, tmp_path: Path) -> None:
    """A load finds a valid cached engine, or is told why not and what to run; it never builds."""
    opts = BuildOptions(precision="fp16", workspace_mib=512)
    with pytest.raises(EngineError) as miss:
        find_cached_engine(onnx, opts, tmp_path / "c", platform=ORIN)
    assert "no cached engine" in str(miss.value)
    assert f"edge-agent engine build {onnx} --fp16 --workspace 512 --cache-dir" in str(miss.value)
    built = ensure_engine(onnx, opts, tmp_path / "c", platform=ORIN, build_fn=FakeGpuBuilder())
    assert find_cached_engine(onnx, opts, tmp_path / "c", platform=ORIN) == built
    newer = ORIN.model_copy(update={"tensorrt_version": "10.7.0"})
    with pytest.raises(EngineError, match="tensorrt_version: '10.3.0' -> '10.7.0'"):
        find_cached_engine(onnx, opts, tmp_path / "c", platform=newer)


def test_int8_load_with_calibration_folder_gone(onnx: Path, tmp_path: Path) -> None:
    """An int8 lookup whose calibration folder disappeared is an EngineError, not an OSError."""
    frames = tmp_path / "frames"
    write_frames(frames, 2)
    opts = BuildOptions(precision="int8", calib_images=frames)
    ensure_engine(onnx, opts, tmp_path / "c", platform=ORIN, build_fn=FakeGpuBuilder())
    shutil.rmtree(frames)
    with pytest.raises(EngineError, match="calibration folder .* is unreadable"):
        find_cached_engine(onnx, opts, tmp_path / "c", platform=ORIN)
