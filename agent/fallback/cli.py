"""`edge-agent florence ...`: export Florence-2 to ONNX (+ int8), try it on an image."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli_common import fail


@click.group("florence")
def florence_group() -> None:
    """Florence-2 fallback model tools (export to ONNX, int8, run once)."""


@florence_group.command("export")
@click.argument("model", type=str)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for the fp32 graphs (the int8 ones go to OUT-int8 unless --int8-out).",
)
@click.option(
    "--int8/--no-int8",
    "int8",
    default=True,
    show_default=True,
    help="Also write int8 graphs (onnxruntime dynamic quantisation).",
)
@click.option(
    "--int8-out",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of the int8 graphs (default: OUT with an '-int8' suffix).",
)
def export_command(model: str, out: Path, int8: bool, int8_out: Path | None) -> None:
    """Export MODEL (a local Florence-2 directory or a hub id) to five ONNX graphs in --out."""
    from agent.fallback.export import export_onnx, quantize_int8
    from agent.fallback.runtime import FlorenceModelError, resolve_model

    try:
        src = resolve_model(model)
        export_onnx(src, out, progress=click.echo)
        if int8:
            target = int8_out or out.with_name(out.name + "-int8")
            quantize_int8(out, target, progress=click.echo)
            click.echo(f"int8 export: {target}  (runtime: onnx-int8)")
    except FlorenceModelError as err:
        fail("florence", str(err))
    click.echo(f"fp32 export: {out}  (runtime: onnx-fp32)")


@florence_group.command("run")
@click.argument("model", type=str)
@click.argument("image", type=click.Path(path_type=Path, exists=False))
@click.option(
    "--runtime",
    default="torch-int8",
    show_default=True,
    type=click.Choice(["torch-fp32", "torch-int8", "torch-fp16-cuda", "onnx-int8", "onnx-fp32"]),
)
@click.option("--task", default="<OD>", show_default=True, help="Florence-2 task token.")
@click.option(
    "--classes",
    default="person,car",
    show_default=True,
    help="Class names (the grounding phrase; labels mapped to their index).",
)
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(1, 1024))
def run_command(
    model: str, image: Path, runtime: str, task: str, classes: str, max_new_tokens: int
) -> None:
    """Run Florence-2 once on IMAGE and print the parsed detections as JSON."""
    import json

    from agent.fallback.capture import CaptureError, read_capture_image
    from agent.fallback.factory import create_runtime
    from agent.fallback.parse import (
        FlorenceParseError,
        UnknownTaskError,
        build_prompt,
        parse_generation,
    )
    from agent.fallback.runtime import FlorenceModelError, resolve_model

    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    try:
        prompt = build_prompt(task, names)
        img = read_capture_image(image)
        rt = create_runtime(runtime)  # type: ignore[arg-type]
        rt.load(resolve_model(model))
        gen = rt.generate(img, prompt, max_new_tokens)
        rt.close()
        res = parse_generation(task, gen.text, gen.image_size, names)
    except (
        FlorenceModelError,
        UnknownTaskError,
        FlorenceParseError,
        CaptureError,
        ValueError,
    ) as err:
        fail("florence", str(err))
    d = res.detections
    click.echo(
        json.dumps(
            {
                "task": task,
                "text": res.text,
                "latency_ms": round(gen.pre_ms + gen.infer_ms, 1),
                "detections": [
                    {
                        "label": res.labels[i],
                        "class_id": int(d.class_id[i]),
                        "confidence": None,
                        "box": [round(float(v), 1) for v in d.xyxy[i]],
                    }
                    for i in range(len(d))
                ],
            },
            indent=1,
        )
    )


@florence_group.command("pack")
@click.argument(
    "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR"
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Archive to write (.tar): sign it with `edge-gateway models sign OUT --kind florence2`.",
)
def pack_command(model_dir: Path, out: Path) -> None:
    """Pack a Florence-2 model DIR (transformers layout, or an ONNX export with its tokenizer)
    into one deterministic, uncompressed tar: the artifact of an over-the-air update."""
    from agent.util.archive import ArchiveError, pack, tree_sha256

    if out.suffix != ".tar":
        fail("florence", f"--out {out}: the archive name must end in .tar")
    if not ((model_dir / "config.json").is_file() or (model_dir / "florence_onnx.json").is_file()):
        fail(
            "florence", f"{model_dir}: no config.json or florence_onnx.json: not a Florence-2 model"
        )
    try:
        length = pack(model_dir, out)
    except ArchiveError as err:
        fail("florence", str(err))
    from agent.util.files import file_sha256

    click.echo(f"packed {model_dir} -> {out}: {length} bytes, sha256 {file_sha256(out)}")
    click.echo(f"content digest (tree_sha256): {tree_sha256(model_dir)}")
