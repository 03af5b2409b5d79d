"""`edge-agent train`: what is refused before Ultralytics is imported, and the report's
pure helpers (the training itself runs in tests/gateway/test_flywheel.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from agent.cli import main
from agent.train.report import EpochRecord, clean_metrics, progress_line, val_losses


def test_bad_requests_are_refused_with_every_reason(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    result = CliRunner().invoke(
        main,
        ["train", str(tmp_path / "nope"), "--base", "weights.bin", "--out", str(out),
         "--imgsz", "300"],
    )  # fmt: skip
    assert result.exit_code == 1
    for reason in ("not found", "give a .pt checkpoint or a .yaml", "multiple of 32",
                   "not empty"):  # fmt: skip
        assert reason in result.stderr


def test_ultralytics_metrics_are_renamed() -> None:
    raw = {"metrics/mAP50(B)": 0.5, "metrics/mAP50-95(B)": 0.3, "val/box_loss": 1.5, "x": "s"}
    assert clean_metrics(raw) == {"mAP50": 0.5, "mAP50-95": 0.3}
    assert val_losses(raw) == {"box": 1.5}
    record = EpochRecord(epoch=2, train_loss={"box": 1.0}, metrics={"mAP50": 0.5}, seconds=3)
    assert progress_line(record, 5) == "epoch 2/5: loss box 1.000; val mAP50 0.500 (3 s)"
