"""Engine builds run in a child process: its errors come back clearly, its crash stays there."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from agent.engines.base import EngineError
from agent.engines.build import build_in_child, ensure_engine
from agent.engines.engine_cache import BuildJob, BuildOptions, Platform

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
T = TypeVar("T")
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


PARENT = """
import sys
from pathlib import Path
from agent.engines.build import build_in_child
from agent.engines.engine_cache import BuildJob, BuildOptions
import tempfile
tempfile.tempdir = sys.argv[2]
job = BuildJob(onnx_path=Path(sys.argv[1]), options=BuildOptions())
build_in_child(job, module="tests.engines.orphaned_builder")
"""


def alive(pid: int) -> bool:
    """Is `pid` a live (not zombie) process?"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_builder_ends_when_the_agent_dies(demo_model: Path, tmp_path: Path) -> None:
    """A builder whose parent (the agent) is killed mid-build ends too, not lingers on the GPU."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(demo_model), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        pid_files = wait_for(lambda: list(tmp_path.glob("*/plan.pid")))
        child = int(pid_files[0].read_text())
        assert alive(child)
    finally:
        parent.kill()
        parent.wait()
    try:
        assert wait_for(lambda: not alive(child)), f"builder {child} outlived its parent"
    finally:
        if alive(child):  # the test failed: do not leave the sleeper behind
            os.kill(child, signal.SIGKILL)


def wait_for(condition: Callable[[], T], deadline_s: float = 30.0) -> T:
    """Poll `condition` until it is truthy (its value) or the deadline passes (its last value)."""
    end = time.monotonic() + deadline_s
    value = condition()
    while not value and time.monotonic() < end:
        time.sleep(0.05)
        value = condition()
    return value
