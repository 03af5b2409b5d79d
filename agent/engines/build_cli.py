"""`edge-agent engine ...`: build TensorRT engines on the device and look at the cache.

`edge-agent engine build MODEL.onnx [--fp16] [--int8 --calib-images DIR] [--workspace MiB]
[--cache-dir DIR]` validates the request (every problem listed, exit 2), then builds or
reuses the cached engine and prints its path. TensorRT and pycuda are imported only when
a build actually runs.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import click

from agent.cli_common import echo_problems, shown_option
from agent.engines.trt import DEFAULT_ENGINE_CACHE as DEFAULT_CACHE_DIR


def parse_input_size(value: str | None) -> tuple[int, int] | None:
    """'320', '320x320' or '384x640' (H x W) -> (H, W); ValueError on anything else."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", value)
    if not m:
        raise ValueError(f"input size must be N or HxW, got {value!r}")
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) else h
    if h <= 0 or w <= 0:
        raise ValueError(f"input size must be > 0, got {value!r}")
    return h, w


@click.group("engine")
def engine_group() -> None:
    """TensorRT engines: build on this device (cached), show the cache."""


@engine_group.command("build")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--fp16", is_flag=True, help="Build an fp16 engine (the usual choice on Jetson).")
@click.option("--int8", is_flag=True, help="Build an int8 engine (fp16 for layers without int8).")
@click.option(
    "--calib-images",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of real camera frames (jpg/png/bmp) for int8 calibration.",
)
@shown_option(
    "--calib-max-images",
    type=int,
    default=500,
    help="Most calibration images used (sorted by name).",
)
@shown_option(
    "--workspace",
    "workspace_mib",
    type=int,
    default=1024,
    help="Builder workspace limit in MiB (keep <= 1024 on an 8 GB Orin Nano).",
)
@shown_option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_CACHE_DIR,
    help="Engine cache folder (the daemon reads model.engine.cache_dir, same default).",
)
@click.option("--input-size", default=None, help="H x W for models with a dynamic input size.")
@shown_option("--device", type=int, default=0, help="CUDA device ordinal.")
@click.option("--force", is_flag=True, help="Rebuild even when the cached engine is valid.")
def build_command(
    model: Path,
    fp16: bool,
    int8: bool,
    calib_images: Path | None,
    calib_max_images: int,
    workspace_mib: int,
    cache_dir: Path,
    input_size: str | None,
    device: int,
    force: bool,
) -> None:
    """Build (or reuse) a TensorRT engine for MODEL.onnx and print its path."""
    from pydantic import ValidationError

    from agent.engines.base import EngineError
    from agent.engines.build import ensure_engine, gather_facts
    from agent.engines.engine_cache import (
        BuildArgsError,
        BuildOptions,
        check_build_args,
        precision_from_flags,
        sidecar_path,
    )

    try:
        hw = parse_input_size(input_size)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--input-size") from None
    precision = precision_from_flags(fp16, int8)
    if precision == "fp32":
        click.echo("note: building fp32; pass --fp16 (or --int8) for Jetson speed", err=True)
    try:
        options = BuildOptions.model_construct(
            precision=precision,
            workspace_mib=workspace_mib,
            calib_images=calib_images,
            calib_max_images=calib_max_images,
            input_hw=hw,
        )
        problems = check_build_args(gather_facts(model, options))
        if problems:
            raise BuildArgsError(problems)
        options = BuildOptions.model_validate(options.model_dump())
    except BuildArgsError as err:
        echo_problems(f"engine build: {len(err.problems)} problem(s)", err.problems)
        sys.exit(2)
    except ValidationError as err:
        click.echo(f"engine build: invalid options: {err}", err=True)
        sys.exit(2)
    started = time.monotonic()
    try:
        path = ensure_engine(model, options, cache_dir, device=device, force=force)
    except EngineError as err:
        click.echo(f"engine build failed: {err}", err=True)
        sys.exit(1)
    click.echo(f"{path}  ({time.monotonic() - started:.1f} s; record: {sidecar_path(path)})")


@engine_group.command("show")
@click.argument("engine", type=click.Path(path_type=Path))
def show_command(engine: Path) -> None:
    """Print what ENGINE was built from and for (its sidecar JSON)."""
    from agent.engines.build import read_record
    from agent.engines.engine_cache import EngineRecordError, sidecar_path

    side = sidecar_path(engine) if engine.suffix != ".json" else engine
    try:
        record = read_record(side)
    except EngineRecordError as err:
        click.echo(f"no valid sidecar: {err}", err=True)
        sys.exit(1)
    ident = record.identity
    click.echo(f"engine      {record.engine_file} ({record.engine_length} bytes)")
    click.echo(f"built from  {record.onnx_file} sha256 {ident.onnx_sha256[:16]}...")
    click.echo(
        f"platform    TensorRT {ident.tensorrt_version}, {ident.gpu_name}, "
        f"compute {ident.compute_capability}"
    )
    runs_on = "later 10.x too" if record.version_compatible else "this exact version only"
    click.echo(f"runs on     TensorRT {ident.tensorrt_version} ({runs_on})")
    click.echo(f"precision   {ident.precision}  workspace {ident.workspace_mib} MiB")
    if ident.calibration_sha256:
        click.echo(f"calibration {ident.calibration_sha256[:16]}... ({ident.calib_max_images} max)")
    click.echo(f"built at    {record.built_at} in {record.build_seconds:.1f} s")
    click.echo(f"key         {record.key}")
