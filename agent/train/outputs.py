"""What `edge-agent train` leaves in its output folder, beside Ultralytics' run folder:
model.onnx (the artifact), model.pt (the next round's --base), manifest.json and
training_report.json."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

from agent.contracts.manifest import Manifest
from agent.train.report import TrainingReport
from agent.util.files import atomic_write_text, file_sha256

MODEL_ONNX = "model.onnx"
MODEL_PT = "model.pt"
MANIFEST = "manifest.json"
REPORT = "training_report.json"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def place_model(out: Path, exported: Path, best: Path) -> Path:
    """Copy the export and the checkpoint to their fixed names; return model.onnx."""
    target = out / MODEL_ONNX
    shutil.copyfile(exported, target)
    shutil.copyfile(best, out / MODEL_PT)
    return target


def write_manifest(
    out: Path, onnx: Path, name: str, version: int, imgsz: int, names: list[str]
) -> Manifest:
    """manifest.json for model.onnx (unsigned: `edge-gateway models sign` signs it)."""
    manifest = Manifest(
        name=name,
        version=version,
        format="onnx",
        sha256=file_sha256(onnx),
        length=onnx.stat().st_size,
        input_size=(imgsz, imgsz),
        class_names=names,
        created=utc_now(),
    )
    text = json.dumps(manifest.model_dump(mode="json", by_alias=True), indent=2) + "\n"
    atomic_write_text(out / MANIFEST, text)
    return manifest


def write_report(out: Path, report: TrainingReport) -> Path:
    path = out / REPORT
    atomic_write_text(path, report.model_dump_json(by_alias=True, indent=2) + "\n")
    return path


def dataset_manifest_sha256(data_yaml: Path) -> str | None:
    """sha256 of dataset.json beside data.yaml (the dataset build's manifest), if any."""
    path = data_yaml.parent / "dataset.json"
    return file_sha256(path) if path.is_file() else None
