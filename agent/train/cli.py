"""`edge-agent train DATASET --base MODEL.pt|yaml --out DIR`: fine-tune on a workstation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from agent.cli_common import fail, out_option, shown_option


@click.command("train")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--base",
    required=True,
    help="Starting weights (.pt, e.g. engines/demo/model.pt) or an architecture "
    "(yolov8n.yaml: from scratch, which needs many epochs).",
)
@out_option("New output folder.", short=False)
@shown_option("--epochs", type=click.IntRange(min=1), default=10)
@shown_option("--imgsz", type=click.IntRange(min=32), default=320)
@shown_option("--batch", type=click.IntRange(min=1), default=16)
@shown_option("--workers", type=click.IntRange(min=0), default=1)
@shown_option("--device", default="auto", help="auto (GPU when present), cpu, 0, ...")
@click.option(
    "--lr0",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Initial learning rate (AdamW); default: Ultralytics' automatic choice.",
)
@shown_option("--mosaic", type=click.FloatRange(0, 1), default=1.0)
@shown_option(
    "--warmup-epochs",
    type=click.FloatRange(min=0),
    default=3.0,
    help="Warm-up; Ultralytics makes it at least 100 iterations, i.e. the whole of a short "
    "fine-tune on a small dataset: use 0 there (docs/flywheel.md).",
)
@shown_option("--seed", type=int, default=0)
@shown_option("--name", default="yolo", help="Model name in the manifest.")
@shown_option("--version", "version", type=click.IntRange(min=1), default=1)
def train_command(dataset: Path, **opts: Any) -> None:
    """Train DATASET (a folder with data.yaml) from --base with Ultralytics (the `train`
    extra, AGPL-3.0), export ONNX, write manifest.json and training_report.json in --out."""
    from pydantic import ValidationError

    from agent.train.request import TrainRequest, request_problems, resolve_data_yaml
    from agent.util.validation import format_validation_error

    try:
        req = TrainRequest(data_yaml=resolve_data_yaml(dataset), **opts)
    except ValidationError as err:
        fail("train", format_validation_error(err))
    problems = request_problems(req)
    if problems:
        fail("train", "; ".join(problems))
    _run(req)


def _run(req: Any) -> None:
    from agent.train import outputs, ultra
    from agent.train.report import TrainingReport, progress_line
    from agent.util.files import file_sha256

    try:
        ultra.import_ultralytics()
        base = Path(req.base)
        report = TrainingReport(
            dataset=str(req.data_yaml.parent), base=req.base,
            dataset_manifest_sha256=outputs.dataset_manifest_sha256(req.data_yaml),
            base_sha256=file_sha256(base) if base.is_file() else None,
            device=ultra.pick_device(req.device), epochs_planned=req.epochs, imgsz=req.imgsz,
            batch=req.batch, seed=req.seed, versions=ultra.versions(),
        )  # fmt: skip
        req.out.mkdir(parents=True, exist_ok=True)
        click.echo(f"train: {req.data_yaml.parent} from {req.base} on {report.device}", err=True)
        best = ultra.train(req, report, lambda r, n: click.echo(progress_line(r, n), err=True))
        t0 = time.monotonic()
        onnx = outputs.place_model(req.out, ultra.export_onnx(best, req.imgsz), best)
        report.export_seconds = round(time.monotonic() - t0, 1)
        manifest = outputs.write_manifest(
            req.out, onnx, req.name, req.version, req.imgsz, ultra.class_names(best)
        )
    except (ultra.TrainError, OSError) as err:
        fail("train", str(err))
    report.onnx_sha256 = manifest.sha256
    path = outputs.write_report(req.out, report)
    final = " ".join(f"{k} {v:.3f}" for k, v in report.final_metrics.items() if "mAP" in k)
    click.echo(
        f"trained {manifest.name}@{manifest.version}: {len(report.epochs)} epochs in "
        f"{report.train_seconds:.0f} s ({final}); {onnx} sha256 {manifest.sha256[:12]}, "
        f"{path.name}, manifest.json"
    )
