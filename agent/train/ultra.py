"""The Ultralytics run: train from a checkpoint or an architecture, one progress line per
epoch, the report filled from the trainer, then the ONNX export (Ultralytics' metadata).

Ultralytics (AGPL-3.0) is only imported here, inside functions: the optional `train` extra.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.train.report import EpochRecord, TrainingReport, clean_metrics, val_losses
from agent.train.request import TrainRequest


class TrainError(Exception):
    """Training could not run or produced nothing usable."""


def import_ultralytics() -> Any:
    """The `ultralytics` module, offline, or TrainError saying how to install it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no hub, no update checks, no downloads
    try:
        import ultralytics
    except ImportError as exc:
        raise TrainError(
            "Ultralytics is not installed: pip install -e '.[train]' (AGPL-3.0; CPU torch "
            "first, see docs/flywheel.md)"
        ) from exc
    return ultralytics


def pick_device(device: str) -> str:
    """'auto' -> '0' when CUDA is available, else 'cpu'."""
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


class EpochRecorder:
    """Ultralytics callbacks that turn each finished epoch into an EpochRecord."""

    def __init__(self, report: TrainingReport, echo: Callable[[EpochRecord, int], None]) -> None:
        self.report = report
        self.echo = echo
        self._trained = False  # an epoch's training ended since the last validation
        self._start = time.monotonic()

    def on_train_epoch_end(self, trainer: Any) -> None:
        self._trained = True

    def on_fit_epoch_end(self, trainer: Any) -> None:
        metrics = dict(trainer.metrics or {})
        if not self._trained:  # the final validation of best.pt, not an epoch
            self.report.final_metrics = clean_metrics(metrics)
            return
        self._trained = False
        now = time.monotonic()
        losses = {str(k).removesuffix("_loss"): float(v) for k, v in (trainer.tloss or {}).items()}
        record = EpochRecord(
            epoch=int(trainer.epoch) + 1,
            train_loss=losses,
            val_loss=val_losses(metrics),
            metrics=clean_metrics(metrics),
            seconds=round(now - self._start, 2),
        )
        self._start = now
        self.report.epochs.append(record)
        self.echo(record, int(trainer.epochs))

    def on_train_end(self, trainer: Any) -> None:
        stopper = getattr(trainer, "stopper", None)
        if stopper is not None and getattr(stopper, "best_epoch", None) is not None:
            self.report.best_epoch = int(stopper.best_epoch)  # already 1-based


def train(
    req: TrainRequest, report: TrainingReport, echo: Callable[[EpochRecord, int], None]
) -> Path:
    """Run the training; return the best checkpoint (best.pt) of the run folder."""
    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(req.base)
    recorder = EpochRecorder(report, echo)
    for event in ("on_train_epoch_end", "on_fit_epoch_end", "on_train_end"):
        model.add_callback(event, getattr(recorder, event))
    extra: dict[str, Any] = {} if req.lr0 is None else {"lr0": req.lr0, "optimizer": "AdamW"}
    t0 = time.monotonic()
    try:
        model.train(
            data=str(req.data_yaml), epochs=req.epochs, imgsz=req.imgsz, batch=req.batch,
            workers=req.workers, device=report.device, project=str(req.out.resolve()),
            name="run", exist_ok=True, seed=req.seed, deterministic=True, amp=False,
            plots=False, mosaic=req.mosaic, warmup_epochs=req.warmup_epochs,
            close_mosaic=min(10, req.epochs // 2), pretrained=Path(req.base).suffix == ".pt",
            verbose=False, **extra,
        )  # fmt: skip
    except (RuntimeError, FileNotFoundError, ValueError, SyntaxError) as exc:
        raise TrainError(f"Ultralytics training failed: {exc}") from exc
    report.train_seconds = round(time.monotonic() - t0, 1)
    best = req.out / "run" / "weights" / "best.pt"
    if not best.is_file():
        raise TrainError(f"training finished without {best}")
    return best


def export_onnx(best: Path, imgsz: int) -> Path:
    """Ultralytics' ONNX export of `best` (static 1x3xSxS, no NMS, its metadata, onnxslim)."""
    from ultralytics import YOLO

    try:
        return Path(YOLO(str(best)).export(format="onnx", imgsz=imgsz, verbose=False))
    except (RuntimeError, ValueError) as exc:
        raise TrainError(f"ONNX export failed: {exc}") from exc


def class_names(best: Path) -> list[str]:
    from ultralytics import YOLO

    names = YOLO(str(best)).names
    return [str(names[i]) for i in sorted(names)]


def versions() -> dict[str, str]:
    import torch
    import ultralytics

    return {"ultralytics": ultralytics.__version__, "torch": torch.__version__}
