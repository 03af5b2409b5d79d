"""`edge-agent eval MODEL... --data DATASET [--split val|gate] [--json]`."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli_common import EXISTING_FILE, fail, shown_option


@click.command("eval")
@click.argument("models", nargs=-1, required=True, type=EXISTING_FILE)
@click.option(
    "--data", "dataset", required=True, type=click.Path(path_type=Path, exists=True),
    help="Dataset folder (or its data.yaml), Ultralytics layout.",
)  # fmt: skip
@shown_option("--split", default="val", help="val, gate, train, ...")
@shown_option("--conf", type=click.FloatRange(0, 1), default=0.001)
@shown_option("--iou", type=click.FloatRange(0, 1), default=0.45,
              help="NMS IoU (the daemon's default).")  # fmt: skip
@shown_option("--threads", type=click.IntRange(min=0), default=0)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
def eval_command(
    models: tuple[Path, ...], dataset: Path, split: str, conf: float, iou: float, threads: int,
    as_json: bool,
) -> None:  # fmt: skip
    """COCO mAP50, mAP50-95 and per-class AP of MODELS (ONNX) on one split, through the
    daemon's own letterbox, decode and NMS; several models side by side. A manifest.json
    beside a model (same sha256) names it."""
    from agent.engines.base import EngineError
    from agent.evaluation.dataset import DatasetError, load_split
    from agent.evaluation.runner import DecodeSettings, evaluate
    from agent.logs import configure_logging
    from agent.messages.figures import figures_table

    configure_logging("console", "warning")  # stdout is for the table or the JSON
    settings = DecodeSettings(conf=conf, iou=iou, threads=threads)
    try:
        report = evaluate(
            list(models), load_split(dataset, split), settings, lambda m: click.echo(m, err=True)
        )
    except (DatasetError, EngineError, OSError) as err:
        fail("eval", str(err))
    if as_json:
        click.echo(report.model_dump_json(by_alias=True, indent=2))
        return
    click.echo(
        f"{report.data} split {report.split}: {report.images} images, {report.boxes} boxes, "
        f"sha256 {report.split_sha256[:16]}"
    )
    columns = [(f"{m.model.name}@{m.model.version}", m.figures) for m in report.models]
    click.echo(figures_table(columns))
    click.echo(f"({report.evaluator})")
