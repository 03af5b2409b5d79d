"""Florence-2 as the labelling teacher: the registry constructor, detect(), a dataset run."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.label.teachers import TEACHERS, LabelledBox, Teacher, TeacherError
from agent.label.teachers.florence2 import Florence2Teacher


@pytest.fixture(scope="module")
def teacher(tiny_model: Path):
    """The Florence-2 teacher on the tiny model (grounding task, torch-int8)."""
    t = Florence2Teacher.from_labels(["person", "car"], model=str(tiny_model), max_new_tokens=16)
    yield t
    t.close()


def test_is_a_teacher(teacher: Florence2Teacher) -> None:
    """It satisfies the label package's Teacher protocol as an open-vocabulary teacher."""
    assert isinstance(teacher, Teacher) and teacher.vocabulary is None
    assert teacher.prompt == "<CAPTION_TO_PHRASE_GROUNDING>person. car"


def test_detect_returns_boxes_without_scores(teacher: Florence2Teacher) -> None:
    """detect() gives ordered pixel boxes with NaN confidence, or counts an unparsable answer."""
    rs = np.random.RandomState(5)
    for _ in range(4):
        img = rs.randint(0, 255, (90, 120, 3), dtype=np.uint8)
        before = teacher.parse_errors
        boxes = teacher.detect(img)
        assert all(isinstance(b, LabelledBox) and math.isnan(b.confidence) for b in boxes)
        assert all(0 <= b.x1 <= b.x2 <= 120 and 0 <= b.y1 <= b.y2 <= 90 for b in boxes)
        assert boxes or teacher.parse_errors == before + 1 or teacher.parse_errors == before


def test_env_settings(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keyword arguments the model, task and runtime come from EDGE_AGENT_FLORENCE_*."""
    monkeypatch.setenv("EDGE_AGENT_FLORENCE_MODEL", str(tiny_model))
    monkeypatch.setenv("EDGE_AGENT_FLORENCE_TASK", "<OD>")
    monkeypatch.setenv("EDGE_AGENT_FLORENCE_RUNTIME", "torch-fp32")
    t = Florence2Teacher.from_labels(["person"])
    assert t.task == "<OD>" and t.info.runtime == "torch-fp32"
    t.close()


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({}, {}, "needs a model"),  # no model anywhere
        ({"task": "<SEGMENT>"}, {}, "unknown Florence-2 task"),  # unknown task
        ({"task": "<CAPTION>"}, {}, "gives no boxes"),  # a text-only task cannot label
        ({"runtime": "tensorrt"}, {}, "unknown Florence-2 runtime"),  # no such runtime
        ({"model": "/nonexistent/florence"}, {}, "does not exist"),  # missing model directory
    ],
)
def test_bad_settings(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict, env: dict, message: str
) -> None:
    """Bad teacher settings raise TeacherError with the reason."""
    monkeypatch.delenv("EDGE_AGENT_FLORENCE_MODEL", raising=False)
    if "model" not in kwargs and message != "needs a model":
        kwargs = {**kwargs, "model": str(tiny_model)}
    with pytest.raises(TeacherError, match=message):
        Florence2Teacher.from_labels(["person"], **kwargs)


def test_bad_image(teacher: Florence2Teacher) -> None:
    """A non-image array is refused with TeacherError."""
    with pytest.raises(TeacherError, match="uint8"):
        teacher.detect(np.zeros((10, 10), dtype=np.uint8))


def test_labels_a_yolo_dataset(teacher: Florence2Teacher, tmp_path: Path) -> None:
    """The label runner with the Florence-2 teacher writes the Ultralytics dataset layout."""
    from agent.label import dataset, runner
    from agent.label.plan import parse_class_map

    src = tmp_path / "imgs"
    src.mkdir()
    rs = np.random.RandomState(1)
    for i in range(4):
        cv2.imwrite(str(src / f"img{i}.jpg"), rs.randint(0, 255, (80, 100, 3), dtype=np.uint8))
    cmap = parse_class_map("person,car")
    spec = dataset.DatasetSpec(
        source=str(src),
        source_kind="images",
        teacher="florence2",
        classes=cmap.spec(),
        class_names=list(cmap.names),
        min_confidence=0.5,
        every=1,
        min_change=0.0,
        val_fraction=0.25,
        gap_frames=0,
        jpeg_quality=90,
    )
    out = tmp_path / "ds"
    dataset.prepare_output(out, spec, resume=False)
    runner.run(src, out, spec, cmap, teacher)
    images = sorted(p.stem for p in (out / "images").glob("*/*.jpg"))
    labels = sorted(p.stem for p in (out / "labels").glob("*/*.txt"))
    assert images == labels == [f"img{i}" for i in range(4)]
    assert (out / "data.yaml").is_file()


def test_registered_in_label_cli() -> None:
    """`edge-agent label --teacher florence2` resolves to this teacher."""
    assert TEACHERS["florence2"] == "agent.label.teachers.florence2:Florence2Teacher.from_labels"


def test_label_cli_with_florence2_options(tiny_model: Path, tmp_path: Path) -> None:
    """`edge-agent label --teacher florence2 --teacher-model DIR --task <OD>` writes a dataset."""
    import cv2
    from click.testing import CliRunner

    from agent.label.cli import label_command
    from tests.helpers.daemon import DEMO_CLIP

    src = tmp_path / "imgs"
    src.mkdir()
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    for i in range(3):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(src / f"f{i}.jpg"), frame)
    cap.release()
    result = CliRunner().invoke(
        label_command,
        [
            str(src),
            "-o",
            str(tmp_path / "ds"),
            "--teacher",
            "florence2",
            "--classes",
            "person",
            "--teacher-model",
            str(tiny_model),
            "--task",
            "<OD>",
            "--teacher-runtime",
            "torch-fp32",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds" / "data.yaml").is_file()
    assert len(list((tmp_path / "ds" / "images").glob("*/*.jpg"))) == 3


def test_label_cli_refuses_florence_options_for_other_teachers(tmp_path: Path) -> None:
    """Florence-2 options with the SSD teacher exit 1 naming the flag."""
    from click.testing import CliRunner

    from agent.label.cli import label_command

    result = CliRunner().invoke(
        label_command,
        [str(tmp_path), "-o", str(tmp_path / "ds"), "--classes", "person", "--task", "<OD>"],
    )
    assert result.exit_code == 1
    assert "--teacher-task: only for --teacher florence2" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--task", "segment"], "--task segment needs --teacher florence2"),  # SSD cannot outline
        (["--task", "masks"], "--task must be 'detect' or 'segment'"),  # unknown kind
    ],
)
def test_label_cli_refuses_bad_task(tmp_path: Path, extra: list[str], message: str) -> None:
    """A label kind the teacher cannot produce, or an unknown one, exits 1 with the reason."""
    from click.testing import CliRunner

    from agent.label.cli import label_command

    args = [str(tmp_path), "-o", str(tmp_path / "ds"), "--classes", "person", *extra]
    result = CliRunner().invoke(label_command, args)
    assert result.exit_code == 1
    assert message in result.output
