"""`edge-agent engine build|show`: argument errors, the missing-TensorRT error, the sidecar view."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.engines.build import ensure_engine
from agent.engines.build_cli import parse_input_size
from agent.engines.engine_cache import BuildOptions, Platform, sidecar_path

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize(
    ("args", "messages"),
    [
        (["missing.onnx", "--fp16"], ["missing.onnx: file not found"]),  # no such model
        (["{model}", "--int8"], ["--int8 needs --calib-images DIR"]),  # int8 without frames
        (
            ["{model}", "--int8", "--calib-images", "{tmp}/none"],
            ["not a directory"],
        ),  # calibration folder missing
        (["{model}", "--int8", "--calib-images", "{tmp}"], ["no images"]),  # empty folder
        (["{model}", "--fp16", "--workspace", "0"], ["--workspace must be > 0 MiB"]),  # workspace
        (["{model}", "--fp16", "--calib-images", "{tmp}"], ["only used with --int8"]),
        (
            ["missing.onnx", "--int8", "--workspace", "-1"],
            ["file not found", "--int8 needs", "--workspace must be > 0"],
        ),  # all at once
    ],
)
def test_build_rejects_bad_arguments(
    tmp_path: Path, demo_model: Path, args: list[str], messages: list[str]
) -> None:
    """Invalid requests exit 2 and list every problem."""
    argv = [a.format(model=demo_model, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(
        main, ["engine", "build", *argv, "--cache-dir", str(tmp_path / "c")]
    )
    assert result.exit_code == 2, result.output
    for m in messages:
        assert m in result.output


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the error without it")
def test_build_without_tensorrt_real_process(tmp_path: Path, demo_model: Path) -> None:
    """The command, in a real process, exits 1 and says TensorRT is missing (no traceback)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from agent.cli import main; main()",
            "engine",
            "build",
            str(demo_model),
            "--fp16",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "TensorRT is not installed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_show_prints_sidecar(tmp_path: Path, demo_model: Path) -> None:
    """`engine show` prints what an engine was built from and for."""
    onnx = tmp_path / "m.onnx"
    shutil.copyfile(demo_model, onnx)
    platform = Platform(
        tensorrt_version="10.3.0", gpu_name="Orin (8 SMs)", compute_capability="8.7"
    )
    path = ensure_engine(
        onnx,
        BuildOptions(precision="fp16"),
        tmp_path / "c",
        platform=platform,
        build_fn=lambda job: b"plan" * 10,
    )
    result = CliRunner().invoke(main, ["engine", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "TensorRT 10.3.0, Orin (8 SMs), compute 8.7" in result.output
    assert "precision   fp16" in result.output
    sidecar_path(path).unlink()
    result = CliRunner().invoke(main, ["engine", "show", str(path)])
    assert result.exit_code == 1 and "no valid sidecar" in result.output


@pytest.mark.parametrize(
    ("text", "hw"),
    [(None, None), ("320", (320, 320)), ("384x640", (384, 640)), (" 480 X 640 ", (480, 640))],
)
def test_parse_input_size(text: str | None, hw: tuple[int, int] | None) -> None:
    """N or HxW is accepted."""
    assert parse_input_size(text) == hw


@pytest.mark.parametrize("text", ["0", "x320", "320x", "-1", "a"])
def test_parse_input_size_rejects(text: str) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError):
        parse_input_size(text)
