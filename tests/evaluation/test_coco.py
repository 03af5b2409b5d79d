"""Pure parts of `edge-agent eval` and of the gate: YOLO -> COCO conversion, pycocotools
figures on hand-made cases, the gate rule, and Manifest.gate staying out of old manifests."""

from __future__ import annotations

import json

import pytest

from agent.contracts.gate import Figures, GateRecord, ModelRef, gate_problems
from agent.contracts.manifest import Manifest
from agent.evaluation.coco import (
    LabelError,
    coco_ground_truth,
    coco_results,
    yolo_to_coco_boxes,
)
from agent.evaluation.metrics import coco_figures
from agent.messages.figures import figures_table

NAMES = ("person", "car")


def test_yolo_line_to_pixel_xywh() -> None:
    """`class cx cy w h` (normalised) -> COCO [x, y, w, h] in pixels."""
    (box,) = yolo_to_coco_boxes("1 0.5 0.25 0.2 0.1\n\n", 200, 100, 2)
    assert box[0] == 1 and box[1] == pytest.approx([80.0, 20.0, 40.0, 10.0])


@pytest.mark.parametrize(
    ("line", "match"),
    [("0 0.5 0.5 0.1", "5 fields"), ("2 0.5 0.5 0.1 0.1", "outside"), ("x 1 1 1 1", "numbers"),
     ("0 0.5 0.5 0 0.1", "empty")],
)  # fmt: skip
def test_bad_label_lines_are_refused(line: str, match: str) -> None:
    with pytest.raises(LabelError, match=match):
        yolo_to_coco_boxes(line, 100, 100, 2)


def _gt() -> dict:
    labels = "0 0.25 0.5 0.2 0.4\n1 0.75 0.5 0.3 0.2\n"
    return coco_ground_truth([(1, "a.jpg", 400, 200, labels), (2, "b.jpg", 400, 200, "")], NAMES)


def test_perfect_detections_score_one_and_shifted_ones_less() -> None:
    """Boxes equal to the ground truth give 1.0; boxes shifted by a third of their width keep
    AP50-95 well below AP50 (only the loose thresholds match)."""
    gt = _gt()
    exact = coco_results(1, [[60, 60, 140, 140], [240, 80, 360, 120]], [0.9, 0.8], [0, 1])
    figures = coco_figures(gt, exact, NAMES)
    assert figures.map50 == figures.map50_95 == 1.0
    assert figures.ap50_95 == {"person": 1.0, "car": 1.0}
    shifted = coco_results(1, [[80, 60, 160, 140], [280, 80, 400, 120]], [0.9, 0.8], [0, 1])
    worse = coco_figures(gt, shifted, NAMES)
    assert worse.map50_95 < 0.5 < worse.map50 <= 1.0


def test_no_detections_score_zero() -> None:
    assert coco_figures(_gt(), [], NAMES) == Figures(map50=0.0, map50_95=0.0)


def test_gate_rule_overall_and_per_class() -> None:
    """Refused when overall mAP50-95 drops by more than the margin, or one class by more than
    the class margin (even if the overall figure improves), or a class has no AP."""
    before = Figures(map50=0.8, map50_95=0.5, ap50_95={"person": 0.4, "car": 0.6})
    same = Figures(map50=0.8, map50_95=0.495, ap50_95={"person": 0.39, "car": 0.6})
    assert gate_problems(same, before, 0.01, 0.05) == []
    lower = Figures(map50=0.8, map50_95=0.48, ap50_95={"person": 0.4, "car": 0.6})
    assert gate_problems(lower, before, 0.01, 0.05) == ["mAP50-95 0.480 < 0.500 - margin 0.01"]
    car_drop = Figures(map50=0.9, map50_95=0.6, ap50_95={"person": 0.7, "car": 0.5})
    (problem,) = gate_problems(car_drop, before, 0.01, 0.05)
    assert problem.startswith("class car")
    missing = Figures(map50=0.9, map50_95=0.6, ap50_95={"person": 0.7})
    assert "no AP" in gate_problems(missing, before, 0.01, 0.05)[0]


def _manifest(**extra: object) -> Manifest:
    return Manifest(
        name="m", version=2, format="onnx", sha256="a" * 64, length=1, input_size=(320, 320),
        class_names=list(NAMES), created="2026-11-29T00:00:00Z", **extra,
    )  # fmt: skip


def test_manifest_gate_is_optional_and_left_out_when_none() -> None:
    """A manifest without gate figures has the JSON form it had before the field existed (so
    older signatures verify); with figures they round-trip."""
    plain = _manifest().model_dump(mode="json", by_alias=True)
    assert "gate" not in plain
    record = GateRecord(
        gate_set_sha256="b" * 64, split="gate", images=5, boxes=20, evaluator="x",
        figures=Figures(map50=0.8, map50_95=0.5, ap50_95={"person": 0.4}),
        replaces=ModelRef(name="m", version=1, sha256="c" * 64),
        replaces_figures=Figures(map50=0.7, map50_95=0.45), margin=0.01, class_margin=0.05,
    )  # fmt: skip
    gated = _manifest(gate=record)
    again = Manifest.model_validate(json.loads(gated.model_dump_json(by_alias=True)))
    assert again.gate == record


def test_figures_table_side_by_side() -> None:
    a = Figures(map50=0.8, map50_95=0.5, ap50_95={"person": 0.4, "car": 0.6})
    b = Figures(map50=0.7, map50_95=0.45, ap50_95={"person": 0.41})
    lines = figures_table([("new@2", a), ("old@1", b)]).splitlines()
    assert lines[0].split() == ["new@2", "old@1"]
    assert lines[3].split() == ["AP50-95", "person", "0.400", "0.410"]
    assert lines[4].split() == ["AP50-95", "car", "0.600", "-"]
