"""Engine builds run in a child process: its errors come back clearly, its crash stays there."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from agent.engines.base import EngineError
from agent.engines.build import build_in_child, ensure_engine
from agent.engines.engine_cache import BuildJob, BuildOptions, Platform

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
ORIN = Platform(tensorrt_version="10.3.0.30", gpu_name="Orin (8 SMs)", compute_capability="8.7")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_child_build_error_comes_back(demo_model: Path) -> None:
    """A build failing in the child (no TensorRT) raises its message in the parent."""
    pid = os.getpid()
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        build_in_child(BuildJob(onnx_path=demo_model, options=BuildOptions(precision="fp16")))
    assert os.getpid() == pid  # the builder ran elsewhere; this process goes on


def test_child_crash_is_an_error_not_a_crash(demo_model: Path) -> None:
    """A builder killed by a signal is reported as such; the caller lives on."""
    job = BuildJob(onnx_path=demo_model, options=BuildOptions(precision="fp16"))
    with pytest.raises(EngineError, match="died \\(signal SIGKILL\\)"):
        build_in_child(job, module="tests.engines.crashing_builder")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_ensure_engine_builds_in_a_child(demo_model: Path, tmp_path: Path) -> None:
    """ensure_engine's default builder is the child process; a failed build writes nothing."""
    cache = tmp_path / "cache"
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        ensure_engine(demo_model, BuildOptions(precision="fp16"), cache, platform=ORIN)
    assert sorted(p.name for p in cache.iterdir()) == [".build.lock"]
