"""`edge-agent florence finetune` on the tiny Florence-2: targets, the measurable move of its
`<OD>` answers toward the labels, determinism, LoRA, and the result in the production path
(runtime factory, ONNX export + int8, `label --teacher florence2 --teacher-model DIR`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from agent.fallback.cli import florence_group
from agent.fallback.finetune import (
    REPORT_FILE,
    FinetuneOptions,
    finetune,
    load_trainable,
    target_fit,
    training_pairs,
)
from agent.fallback.targets import LabelledObject, grounding_target, od_target
from agent.fallback.yolo_dataset import read_split

NAMES = ("person", "car")
# (class, x1, y1, x2, y2) of the one object in each 64x48 training frame
BOXES = [(0, 10, 8, 40, 40), (1, 30, 20, 60, 44), (0, 4, 4, 30, 44), (1, 20, 10, 62, 30)]
# 80 optimiser steps: a few seconds for the tiny model on one core
TRAIN_ARGS = ["--epochs", "40", "--lr", "3e-2", "--batch-size", "2", "--threads", "1"]


def make_dataset(root: Path) -> Path:
    """A 4-frame Ultralytics dataset: one coloured box per noisy frame."""
    (root / "images/train").mkdir(parents=True)
    (root / "labels/train").mkdir(parents=True)
    (root / "data.yaml").write_text(
        "train: images/train\nval: images/train\nnames: [person, car]\n"
    )
    rs = np.random.RandomState(0)
    for i, (c, x1, y1, x2, y2) in enumerate(BOXES):
        img = rs.randint(0, 40, (48, 64, 3), dtype=np.uint8)
        img[y1:y2, x1:x2] = (30, 200, 90) if c == 0 else (200, 60, 30)
        cv2.imwrite(str(root / f"images/train/f{i}.png"), img)
        line = f"{c} {(x1 + x2) / 128} {(y1 + y2) / 96} {(x2 - x1) / 64} {(y2 - y1) / 48}\n"
        (root / f"labels/train/f{i}.txt").write_text(line)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ft") / "ds")


@pytest.fixture(scope="module")
def finetuned(tiny_model: Path, dataset: Path) -> Path:
    """The tiny model fine-tuned on the 4 frames through the CLI (seed 0)."""
    out = dataset.parent / "tuned"
    args = ["finetune", str(dataset), "--base", str(tiny_model), "--out", str(out), *TRAIN_ARGS]
    result = CliRunner().invoke(florence_group, args)
    assert result.exit_code == 0, result.output
    assert "fine-tuned on 4 image(s), 4 pair(s), 80 step(s)" in result.output
    return out


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def od_answers(model_dir: Path, dataset: Path) -> tuple[float, float]:
    """Greedy `<OD>` answers on the frames, through the production teacher and runtime:
    (share of the label's answer tokens generated at their position, mean best IoU of a
    parsed box carrying the frame's label; 0 where there is none)."""
    from agent.label.teachers.florence2 import Florence2Teacher

    teacher = Florence2Teacher(
        NAMES, str(model_dir), task="<OD>", runtime="torch-fp32", max_new_tokens=16, threads=1
    )
    rt, tok = teacher._rt, teacher._rt.processor.tokenizer  # noqa: SLF001 - same loaded model
    pairs = training_pairs(read_split(dataset), ("<OD>",))
    matched, total, ious = 0, 0, []
    for (path, target), (c, *box) in zip(pairs, BOXES, strict=True):
        img = cv2.imread(str(path))
        got = rt.generate(img, "<OD>", 16).token_ids[1:]  # after the decoder start token
        want = [tok.bos_token_id, *tok(target.answer, add_special_tokens=False)["input_ids"]]
        want.append(tok.eos_token_id)
        matched += sum(a == b for a, b in zip(got, want, strict=False))
        total += len(want)
        found = teacher.detect(img)
        ious.append(
            max(
                (_iou((b.x1, b.y1, b.x2, b.y2), tuple(box)) for b in found if b.label == NAMES[c]),
                default=0.0,
            )
        )
    teacher.close()
    return matched / total, float(np.mean(ious))


def test_targets_are_loc_token_strings() -> None:
    """Boxes become `label<loc..>x4` in reading order; grounding groups boxes by phrase."""
    objs = [
        LabelledObject("car", (384.0, 288.0, 768.0, 576.0)),
        LabelledObject("person", (0.0, 0.0, 76.8, 57.6)),
        LabelledObject("car", (76.8, 0.0, 153.6, 57.6)),
    ]
    size = (768, 576)
    assert od_target(objs, size).answer == (
        "person<loc_0><loc_0><loc_100><loc_100>car<loc_100><loc_0><loc_200><loc_100>"
        "car<loc_500><loc_500><loc_999><loc_999>"
    )
    g = grounding_target(objs, size)
    assert g is not None and g.prompt == "<CAPTION_TO_PHRASE_GROUNDING>person. car"
    assert g.answer == (
        "person<loc_0><loc_0><loc_100><loc_100>"
        "car<loc_100><loc_0><loc_200><loc_100><loc_500><loc_500><loc_999><loc_999>"
    )
    assert grounding_target([], size) is None


def test_finetune_moves_od_answers_toward_labels(
    tiny_model: Path, dataset: Path, finetuned: Path
) -> None:
    """After fine-tuning, the labels' <OD> sequences are far likelier and the parsed <OD>
    boxes on the training frames overlap the labelled ones, where before they did not."""
    pairs = training_pairs(read_split(dataset), ("<OD>",))
    before = target_fit(*load_trainable(tiny_model, FinetuneOptions()), pairs)
    after = target_fit(*load_trainable(finetuned, FinetuneOptions()), pairs)
    (match_before, iou_before), (match_after, iou_after) = (
        od_answers(tiny_model, dataset),
        od_answers(finetuned, dataset),
    )
    print(
        f"NLL {before.nll:.2f} -> {after.nll:.2f}; teacher-forced token accuracy "
        f"{before.accuracy:.2f} -> {after.accuracy:.2f}; greedy <OD> tokens in place "
        f"{match_before:.2f} -> {match_after:.2f}; parsed box IoU {iou_before:.2f} -> "
        f"{iou_after:.2f}"
    )
    assert after.nll < 0.3 * before.nll
    assert after.accuracy > before.accuracy + 0.25
    assert match_after > match_before + 0.25
    assert iou_after >= iou_before
    report = json.loads((finetuned / REPORT_FILE).read_text())
    assert len(report["loss_per_epoch"]) == 40
    assert report["loss_per_epoch"][-1] < report["loss_per_epoch"][0]
    assert 0 < report["params_trained"] < report["params_total"]  # vision tower frozen


def _weights_digest(d: Path) -> str:
    return hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_model(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    """Two runs with one seed give identical losses and weights; another seed differs."""
    opts = FinetuneOptions(epochs=1, lr=1e-3, batch_size=2, threads=1, seed=7)
    runs = [finetune(dataset, tiny_model, tmp_path / f"r{i}", opts, progress=False) for i in (0, 1)]
    other = finetune(
        dataset, tiny_model, tmp_path / "r2", opts.model_copy(update={"seed": 8}), progress=False
    )
    assert runs[0].loss_per_epoch == runs[1].loss_per_epoch != other.loss_per_epoch
    assert _weights_digest(tmp_path / "r0") == _weights_digest(tmp_path / "r1")
    assert _weights_digest(tmp_path / "r0") != _weights_digest(tmp_path / "r2")


def test_lora_trains_adapters_and_merges(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    """--lora trains a small share of the parameters; the merged result loads in production."""
    from agent.fallback.factory import create_runtime

    opts = FinetuneOptions(epochs=3, lr=1e-2, batch_size=2, threads=1, lora=True, lora_rank=4)
    report = finetune(dataset, tiny_model, tmp_path / "lora", opts, progress=False)
    assert report.params_trained < 0.2 * report.params_total
    assert report.loss_per_epoch[-1] < report.loss_per_epoch[0]
    rt = create_runtime("torch-fp32")
    rt.load(tmp_path / "lora")  # plain transformers layout: no adapter files needed
    assert not list((tmp_path / "lora").glob("adapter_*"))
    rt.close()


def test_finetuned_exports_to_onnx_int8(finetuned: Path, tmp_path: Path) -> None:
    """The fine-tuned directory exports with the production exporter; fp32 ONNX gives torch's
    tokens and the int8 set loads in the onnx-int8 runtime."""
    from agent.fallback.export import export_onnx, quantize_int8
    from agent.fallback.factory import create_runtime

    export_onnx(finetuned, tmp_path / "onnx")
    quantize_int8(tmp_path / "onnx", tmp_path / "onnx-int8")
    img = cv2.imread(str(finetuned.parent / "ds/images/train/f0.png"))
    gens = {}
    for kind, d in (("torch-fp32", finetuned), ("onnx-fp32", tmp_path / "onnx")):
        rt = create_runtime(kind)  # type: ignore[arg-type]
        rt.load(d)
        gens[kind] = rt.generate(img, "<OD>", 24).token_ids
        rt.close()
    assert gens["onnx-fp32"] == gens["torch-fp32"]
    rt = create_runtime("onnx-int8")
    assert rt.load(tmp_path / "onnx-int8").runtime == "onnx-int8"
    rt.close()


def test_label_uses_finetuned_model(
    finetuned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`label --teacher florence2 --teacher-model DIR` labels the frames with the tuned model,
    and `--task segment` writes a segment dataset from it."""
    from agent.label.cli import label_command
    from agent.util.labels import segment_line_to_box_line

    monkeypatch.setenv("EDGE_AGENT_FLORENCE_THREADS", "1")
    base = [str(finetuned.parent / "ds/images/train"), "--teacher", "florence2"]
    base += ["--classes", "person,car", "--teacher-model", str(finetuned)]
    base += ["--teacher-runtime", "torch-fp32", "--teacher-task", "<OD>", "--no-progress"]
    result = CliRunner().invoke(label_command, [*base, "-o", str(tmp_path / "det")])
    assert result.exit_code == 0, result.output
    lines = [
        ln for p in (tmp_path / "det/labels").glob("*/*.txt") for ln in p.read_text().splitlines()
    ]
    assert lines and all(len(ln.split()) == 5 for ln in lines)  # it found labelled boxes
    result = CliRunner().invoke(
        label_command, [*base, "-o", str(tmp_path / "seg"), "--task", "segment"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "seg/edge-label.json").read_text())["task"] == "segment"
    for p in (tmp_path / "seg/labels").glob("*/*.txt"):
        for line in p.read_text().splitlines():
            segment_line_to_box_line(line)  # raises unless `class x y x y x y ...` in 0..1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-dataset", "cannot read the dataset description"),  # nothing at DATASET
        ("out-not-empty", "is not empty"),  # would overwrite a model
        ("bad-task", "cannot fine-tune on"),  # not a box target
    ],
)
def test_finetune_refuses(
    tiny_model: Path, dataset: Path, tmp_path: Path, case: str, message: str
) -> None:
    """Bad input exits 1 with the reason, before any training."""
    out = tmp_path / "out"
    args = ["finetune", str(dataset), "--base", str(tiny_model), "--out", str(out)]
    if case == "no-dataset":
        args[1] = str(tmp_path / "nothing")
    elif case == "out-not-empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    else:
        args += ["--task", "<CAPTION>"]
    result = CliRunner().invoke(florence_group, args)
    assert result.exit_code == 1
    assert message in result.output
    assert case != "out-not-empty" or (out / "keep.txt").read_text() == "mine"
