"""`edge-agent eval` on real models and real frames: the demo model against labels that are
its own confident detections scores high, its NaN twin scores zero, side by side."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest
import yaml
from click.testing import CliRunner

from agent.cli import main
from agent.contracts.dataset import gate_set_sha256
from agent.contracts.gate import EvalReport
from agent.engines.detector import load_detector
from agent.engines.ort import OnnxRuntimeConfig
from agent.util.labels import yolo_label_line
from tests.helpers.daemon import DEMO_CLIP, DEMO_MODEL


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 clip frames; labels: the demo model's own detections at conf 0.5 (val split), and
    the same files as a gate folder."""
    root = tmp_path_factory.mktemp("evalds")
    for kind in ("images", "labels"):
        (root / kind / "val").mkdir(parents=True)
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    with load_detector(DEMO_MODEL, OnnxRuntimeConfig(), conf_threshold=0.5) as det:
        for i in range(6):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i * 40)
            ok, frame = cap.read()
            assert ok
            dets, _ = det.detect(frame)
            h, w = frame.shape[:2]
            lines = [yolo_label_line(int(c), *map(float, b), w, h)
                     for b, c in zip(dets.xyxy, dets.class_id, strict=True)]  # fmt: skip
            cv2.imwrite(str(root / "images" / "val" / f"f{i}.jpg"), frame)
            (root / "labels" / "val" / f"f{i}.txt").write_text("".join(x + "\n" for x in lines))
    names = {"names": {0: "person", 1: "car"}}
    (root / "data.yaml").write_text(yaml.safe_dump({"val": "images/val", **names}))
    gate = root / "gate"
    for kind in ("images", "labels"):
        shutil.copytree(root / kind / "val", gate / kind)
    (gate / "data.yaml").write_text(yaml.safe_dump({"val": "images", **names}))
    return root


def test_eval_side_by_side_json(dataset: Path, tmp_path: Path) -> None:
    from tests.ota.models import nan

    bad = nan(DEMO_MODEL, tmp_path / "nan.onnx")
    result = CliRunner().invoke(
        main, ["eval", str(DEMO_MODEL), str(bad), "--data", str(dataset), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = EvalReport.model_validate_json(result.stdout)
    demo, garbage = report.models
    assert report.images == 6 and report.boxes > 10
    assert demo.model.name == "demo-yolov8n" and demo.input_size == (320, 320)
    assert demo.figures.map50 > 0.9 and set(demo.figures.ap50_95) <= {"person", "car"}
    assert garbage.figures.map50 == garbage.figures.map50_95 == 0.0


def test_eval_gate_split_uses_the_gate_digest(dataset: Path) -> None:
    """`--split gate` reads DATASET/gate and reports gate_set_sha256 of that folder; the
    table goes to stdout, progress to stderr."""
    result = CliRunner().invoke(main, ["eval", str(DEMO_MODEL), "--data", str(dataset),
                                       "--split", "gate"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert gate_set_sha256(dataset / "gate")[:16] in result.stdout
    assert "demo-yolov8n@1" in result.stdout and "AP50-95 person" in result.stdout


def test_eval_refuses_a_missing_split_and_foreign_classes(dataset: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(DEMO_MODEL), "--data", str(dataset),
                                       "--split", "train"])  # fmt: skip
    assert result.exit_code == 1 and "no split 'train'" in result.stderr
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    data = yaml.safe_load((other / "data.yaml").read_text())
    (other / "data.yaml").write_text(yaml.safe_dump({**data, "names": {0: "dog", 1: "cat"}}))
    result = CliRunner().invoke(main, ["eval", str(DEMO_MODEL), "--data", str(other)])
    assert result.exit_code == 1 and "differ from the dataset" in result.stderr
