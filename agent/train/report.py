"""The training report (`training_report.json`): what was trained from what, and how it went.

Pure pydantic; `agent.train.ultra` fills it from Ultralytics' trainer, epoch by epoch.
"""

from __future__ import annotations

from pydantic import Field

from agent.util.models import StrictModel

REPORT_SCHEMA = "edge.training_report/1"


class EpochRecord(StrictModel):
    """One epoch: mean training losses, validation losses and metrics, wall time."""

    epoch: int = Field(ge=1)
    train_loss: dict[str, float]
    """Mean per-batch loss by name (box, cls, dfl)."""
    val_loss: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    """Ultralytics' validation figures (precision, mAP...)."""
    seconds: float = Field(ge=0)


class TrainingReport(StrictModel):
    """What `edge-agent train` did; written beside the model it produced."""

    schema_: str = Field(REPORT_SCHEMA, alias="schema")
    dataset: str
    dataset_manifest_sha256: str | None = None
    """sha256 of the dataset's dataset.json, when it has one."""
    base: str
    base_sha256: str | None = None
    device: str
    epochs_planned: int
    imgsz: int
    batch: int
    seed: int
    epochs: list[EpochRecord] = Field(default_factory=list)
    final_metrics: dict[str, float] = Field(default_factory=dict)
    """Ultralytics' validation of the best weights."""
    best_epoch: int | None = None
    train_seconds: float = 0.0
    export_seconds: float = 0.0
    onnx_sha256: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    """ultralytics, torch."""
    licence: str = Field(
        "Weights trained with Ultralytics are AGPL-3.0 unless you hold an Ultralytics "
        "Enterprise licence (engines/demo/README.md)."
    )


def clean_metrics(raw: dict[str, object]) -> dict[str, float]:
    """Ultralytics' metric dict ('metrics/mAP50(B)': 0.5, 'val/box_loss': ...) -> floats,
    names shortened ('mAP50', 'mAP50-95', 'precision', 'recall'); val losses left out."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key.startswith("val/") or not isinstance(value, (int, float)):
            continue
        name = key.removeprefix("metrics/").removesuffix("(B)")
        out[name] = float(value)
    return out


def val_losses(raw: dict[str, object]) -> dict[str, float]:
    """The 'val/box_loss'-style entries of Ultralytics' metric dict, as {'box': ...}."""
    return {
        key.removeprefix("val/").removesuffix("_loss"): float(value)
        for key, value in raw.items()
        if key.startswith("val/") and isinstance(value, (int, float))
    }


def progress_line(record: EpochRecord, total: int) -> str:
    """One line per epoch for the terminal."""
    losses = " ".join(f"{k} {v:.3f}" for k, v in record.train_loss.items())
    shown = {k: record.metrics[k] for k in ("mAP50", "mAP50-95") if k in record.metrics}
    figures = " ".join(f"{k} {v:.3f}" for k, v in shown.items())
    return f"epoch {record.epoch}/{total}: loss {losses}; val {figures} ({record.seconds:.0f} s)"
