"""An engine runs only on the exact TensorRT and device model that built it (manifest compat)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.contracts.manifest import Compat, engine_compat_problems
from agent.engines.build import ensure_engine, read_record
from agent.engines.engine_cache import BuildJob, BuildOptions, Platform, sidecar_path
from agent.gateway.registry import engine_compat

NANO = Platform(tensorrt_version="10.3.0.30", gpu_name="Orin (8 SMs)", compute_capability="8.7")
AGX = Platform(tensorrt_version="10.3.0.30", gpu_name="Orin (16 SMs)", compute_capability="8.7")
BUILT_ON_NANO = Compat(tensorrt="10.3.0.30", gpu_name="Orin (8 SMs)", gpu_arch="sm_87")


def problems(compat: Compat, here: Platform | None) -> list[str]:
    """The device-side check for `compat` on `here` (None: no TensorRT/GPU probed)."""
    return engine_compat_problems(
        compat,
        tensorrt_version=None if here is None else here.tensorrt_version,
        compute_capability=None if here is None else here.compute_capability,
        gpu_name=None if here is None else here.gpu_name,
    )


@pytest.mark.parametrize(
    ("compat", "here", "count"),
    [
        (BUILT_ON_NANO, NANO, 0),  # the platform that built it
        (BUILT_ON_NANO, AGX, 1),  # same sm_87, another device model
        (BUILT_ON_NANO, NANO.model_copy(update={"tensorrt_version": "10.3.0.26"}), 1),
        (BUILT_ON_NANO, NANO.model_copy(update={"tensorrt_version": "10.7.0"}), 1),
        (Compat(tensorrt="10.3", gpu_name="Orin (8 SMs)"), NANO, 1),  # 10.3 is 10.3.0.0, not .30
        (Compat(min_tensorrt="10.3", gpu_arch="sm_87"), NANO, 2),  # loose: names neither
        (Compat(), NANO, 2),
        (BUILT_ON_NANO, None, 3),  # nothing can be checked: no pass
    ],
)
def test_exact_tensorrt_and_device_model(compat: Compat, here: Platform | None, count: int) -> None:
    """An engine needs its exact TensorRT version and device model named, and both met."""
    assert len(problems(compat, here)) == count, problems(compat, here)


@pytest.mark.parametrize(
    ("here_trt", "count"),
    [("10.3.0.30", 0), ("10.7.0", 0), ("10.2.0", 1), ("11.0.0", 1)],
)
def test_version_compatible_runs_on_later_same_major(here_trt: str, count: int) -> None:
    """A VERSION_COMPATIBLE engine also runs on later TensorRT of the same major."""
    compat = Compat(tensorrt="10.3.0.30", version_compatible=True, gpu_name="Orin (8 SMs)")
    here = NANO.model_copy(update={"tensorrt_version": here_trt})
    assert len(problems(compat, here)) == count


def plan_bytes(job: BuildJob) -> bytes:
    """Stands in for TensorRT's builder (no GPU here)."""
    return b"plan-for-" + job.onnx_path.name.encode()


def test_build_record_gives_the_manifest_compat(tmp_path: Path, demo_model: Path) -> None:
    """The gateway fills compat from the build record; the same device accepts, another refuses."""
    onnx = tmp_path / "m.onnx"
    shutil.copyfile(demo_model, onnx)
    engine = ensure_engine(onnx, BuildOptions(), tmp_path / "c", platform=NANO, build_fn=plan_bytes)
    record = read_record(sidecar_path(engine))
    assert (record.identity.tensorrt_version, record.identity.gpu_name) == (
        "10.3.0.30",
        "Orin (8 SMs)",
    )
    assert record.version_compatible is False
    compat = engine_compat(engine, None)
    assert compat == BUILT_ON_NANO
    assert problems(compat, NANO) == []
    assert problems(compat, AGX) == ["built on Orin (8 SMs), GPU here is Orin (16 SMs)"]


def test_engine_without_build_record_keeps_given_compat(tmp_path: Path) -> None:
    """Without a build record the gateway records only what it was given (devices refuse)."""
    engine = tmp_path / "prebuilt.engine"
    engine.write_bytes(b"plan")
    compat = engine_compat(engine, Compat(gpu_arch="sm_87"))
    assert compat == Compat(gpu_arch="sm_87")
    assert len(problems(compat, NANO)) == 2
