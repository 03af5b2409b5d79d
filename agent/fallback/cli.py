"""`edge-agent florence ...`: export Florence-2 to ONNX (+ int8), try it on an image, fine-tune."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from agent.cli_common import fail, out_option, progress_option, shown_option


@click.group("florence")
def florence_group() -> None:
    """Florence-2 fallback model tools (export to ONNX, int8, run once, fine-tune)."""


@florence_group.command("export")
@click.argument("model", type=str)
@out_option("Directory for the fp32 graphs (the int8 ones go to OUT-int8 unless --int8-out).")
@shown_option(
    "--int8/--no-int8",
    "int8",
    default=True,
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
@shown_option(
    "--runtime",
    default="torch-int8",
    type=click.Choice(["torch-fp32", "torch-int8", "torch-fp16-cuda", "onnx-int8", "onnx-fp32"]),
)
@shown_option("--task", default="<OD>", help="Florence-2 task token.")
@shown_option(
    "--classes",
    default="person,car",
    help="Class names (the grounding phrase; labels mapped to their index).",
)
@click.option("--phrase", default=None, help="Phrase of the phrase tasks (default: --classes).")
@click.option(
    "--region",
    default=None,
    help="Region tasks: the box 'x1,y1,x2,y2' in pixels of IMAGE.",
)
@shown_option("--max-new-tokens", default=128, type=click.IntRange(1, 1024))
def run_command(
    model: str,
    image: Path,
    runtime: str,
    task: str,
    classes: str,
    phrase: str | None,
    region: str | None,
    max_new_tokens: int,
) -> None:
    """Run Florence-2 once on IMAGE and print the parsed detections as JSON."""
    from agent.fallback.capture import CaptureError, read_capture_image
    from agent.fallback.factory import create_runtime
    from agent.fallback.parse import FlorenceParseError, UnknownTaskError, parse_generation
    from agent.fallback.prompts import build_prompt
    from agent.fallback.runtime import FlorenceModelError, resolve_model

    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    try:
        img = read_capture_image(image)
        size = (int(img.shape[1]), int(img.shape[0]))
        box = _region(region)
        prompt = build_prompt(task, names, phrase=phrase, region=box, image_size=size)
        rt = create_runtime(runtime)  # type: ignore[arg-type]
        rt.load(resolve_model(model))
        gen = rt.generate(img, prompt, max_new_tokens)
        rt.close()
        res = parse_generation(task, gen.text, gen.image_size, names, region=box)
    except (
        FlorenceModelError,
        UnknownTaskError,
        FlorenceParseError,
        CaptureError,
        ValueError,
    ) as err:
        fail("florence", str(err))
    click.echo(_result_json(res, round(gen.pre_ms + gen.infer_ms, 1)))


def _region(text: str | None):  # noqa: ANN202 - Region | None (lazy import)
    """--region 'x1,y1,x2,y2' -> a Region (None when not given); ValueError when malformed."""
    from agent.fallback.prompts import Region

    if text is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--region must be 'x1,y1,x2,y2' in pixels, got {text!r}") from None
    return Region(box=(x1, y1, x2, y2))


def _result_json(res, latency_ms: float) -> str:  # noqa: ANN001 - FlorenceResult
    """The printed answer: task, text, detections (with polygons for polygon tasks)."""
    import json

    d = res.detections
    dets = []
    for i in range(len(d)):
        det = {
            "label": res.labels[i],
            "class_id": int(d.class_id[i]),
            "confidence": None,
            "box": [round(float(v), 1) for v in d.xyxy[i]],
        }
        if res.polygons:
            det["polygons"] = [np.round(p, 1).tolist() for p in res.polygons[i]]
        dets.append(det)
    out = {"task": res.task, "text": res.text, "latency_ms": latency_ms, "detections": dets}
    return json.dumps(out, indent=1)


@florence_group.command("finetune")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--base",
    required=True,
    type=str,
    help="Model to start from: a transformers Florence-2 directory or hub id.",
)
@out_option(
    "New directory for the fine-tuned model (transformers layout + finetune_report.json).",
    short=False,
)
@shown_option("--epochs", default=10, type=click.IntRange(min=1))
@shown_option("--lr", default=1e-6, type=click.FloatRange(min=0, min_open=True))
@shown_option("--batch-size", default=4, type=click.IntRange(min=1))
@shown_option("--seed", default=0, type=int)
@shown_option(
    "--task",
    "tasks",
    multiple=True,
    default=("<OD>",),
    help="Target task, repeatable: '<OD>' and/or '<CAPTION_TO_PHRASE_GROUNDING>'.",
)
@click.option("--lora", is_flag=True, help="Train LoRA adapters (merged into the result).")
@shown_option("--lora-rank", default=8, type=click.IntRange(min=1))
@click.option(
    "--train-vision", is_flag=True, help="Also train the vision tower (frozen by default)."
)
@shown_option("--split", default="train", help="Dataset split to train on.")
@shown_option("--device", default="cpu", help="torch device (cpu, cuda).")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads.")
@progress_option()
def finetune_command(
    dataset: Path,
    base: str,
    out: Path,
    tasks: tuple[str, ...],
    train_vision: bool,
    progress: bool,
    **options: object,
) -> None:
    """Fine-tune Florence-2 on DATASET (an Ultralytics YOLO dataset) into --out."""
    from agent.fallback.finetune import FinetuneError, FinetuneOptions, finetune
    from agent.fallback.runtime import FlorenceModelError, resolve_model

    try:
        opts = FinetuneOptions(tasks=tasks, freeze_vision=not train_vision, **options)
        report = finetune(dataset, resolve_model(base), out, opts, progress=progress)
    except (FinetuneError, FlorenceModelError, ValueError) as err:
        fail("florence", str(err))
    losses = ", ".join(f"{v:.4f}" for v in report.loss_per_epoch)
    click.echo(
        f"{out}: fine-tuned on {report.images} image(s), {report.pairs} pair(s), "
        f"{report.steps} step(s) in {report.seconds:.1f} s; trained {report.params_trained:,} of "
        f"{report.params_total:,} parameters; loss per epoch: {losses}"
    )


@florence_group.command("pack")
@click.argument(
    "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR"
)
@out_option(
    "Archive to write (.tar): sign it with `edge-gateway models sign OUT --kind florence2`.",
    file=True,
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
