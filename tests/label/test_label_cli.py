"""`edge-agent label` end to end with the real SSD-MobileNet-v2 teacher on real media."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from agent.label.cli import label_command
from agent.label.plan import Split, name_split
from agent.util.files import is_temp_leftover
from tests.conftest import REPO

CLASSES = "person=person,car=car,truck=car"
# 30 frames at 10 fps, every 2nd -> 15 samples; 20 % val -> 3; a 0.3 s gap is 3 frames.
VIDEO_ARGS = ["--classes", CLASSES, "--every", "2", "--min-change", "0", "--gap", "0.3"]


def label(*args: str | Path) -> Result:
    """Run `edge-agent label` in-process without a progress bar."""
    return CliRunner().invoke(label_command, [*map(str, args), "--no-progress"])


def stems(out: Path, kind: str, split: str) -> list[str]:
    """Sample names present in one split folder."""
    return sorted(p.stem for p in (out / kind / split).iterdir())


@pytest.fixture(scope="module")
def video_dataset(short_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset labelled once from the short clip."""
    out = tmp_path_factory.mktemp("ds") / "street"
    result = label(short_clip, "-o", out, *VIDEO_ARGS)
    assert result.exit_code == 0, result.output
    return out


def test_video_dataset_layout(video_dataset: Path) -> None:
    """The dataset has the Ultralytics layout, class names in data.yaml and paired files."""
    data = yaml.safe_load((video_dataset / "data.yaml").read_text())
    assert data == {"train": "images/train", "val": "images/val", "nc": 2,
                    "names": {0: "person", 1: "car"}}  # fmt: skip
    for split in ("train", "val"):
        assert stems(video_dataset, "images", split) == stems(video_dataset, "labels", split)
    assert len(stems(video_dataset, "images", "train")) == 11  # 15 - 3 val - 1 in the gap
    assert len(stems(video_dataset, "images", "val")) == 3


def test_video_labels_are_valid_yolo_lines(video_dataset: Path) -> None:
    """Every label line is `class cx cy w h` with a known class and numbers in 0..1."""
    lines = [
        line
        for path in video_dataset.glob("labels/*/*.txt")
        for line in path.read_text().splitlines()
    ]
    assert sum(line.startswith("0 ") for line in lines) >= 10  # people are found
    for line in lines:
        cls, *nums = line.split()
        assert cls in {"0", "1"} and len(nums) == 4, line
        cx, cy, w, h = map(float, nums)
        assert 0 < w <= 1 and 0 < h <= 1 and 0 <= cx <= 1 and 0 <= cy <= 1, line


def test_video_split_by_time_has_no_leakage(video_dataset: Path) -> None:
    """All val frames come after all train frames, more than the gap apart."""
    spec = json.loads((video_dataset / "edge-label.json").read_text())
    train = [int(s.rsplit("_", 1)[1]) for s in stems(video_dataset, "images", "train")]
    val = [int(s.rsplit("_", 1)[1]) for s in stems(video_dataset, "images", "val")]
    assert spec["gap_frames"] == 3
    assert max(train) + spec["gap_frames"] < min(val)


def test_rerun_without_resume_is_refused(video_dataset: Path, short_clip: Path) -> None:
    """Labelling into a finished dataset without --resume exits 1 and says to pass it."""
    result = label(short_clip, "-o", video_dataset, *VIDEO_ARGS)
    assert result.exit_code == 1
    assert "pass --resume" in result.stderr


def test_resume_after_kill_redoes_nothing(short_clip: Path, tmp_path: Path) -> None:
    """A run killed with SIGKILL is finished by --resume without rewriting done samples."""
    out = tmp_path / "ds"
    cmd = [sys.executable, "-c", "from agent.cli import main; main()", "label",
           str(short_clip), "-o", str(out), *VIDEO_ARGS, "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("labels/*/*.txt"))) < 3:
            assert proc.poll() is None, "labeller ended before it could be killed"
            assert time.monotonic() < deadline, "labeller wrote no samples within 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    done = {p: p.stat().st_mtime_ns for p in out.glob("labels/*/*.txt")}
    assert 3 <= len(done) < 14, "kill should land mid-run"
    result = label(short_clip, "-o", out, *VIDEO_ARGS, "--resume")
    assert result.exit_code == 0, result.output
    assert f"{14 - len(done)} image(s), {len(done)} already done" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in done} == done
    assert len(list(out.glob("labels/*/*.txt"))) == len(list(out.glob("images/*/*.jpg"))) == 14
    assert not [p for p in out.rglob(".*") if is_temp_leftover(p)]


def test_image_folder_dataset(image_folder: Path, tmp_path: Path) -> None:
    """A folder (with a sub-folder) becomes one sample per image, split by name hash."""
    out = tmp_path / "ds"
    result = label(image_folder, "-o", out, "--classes", "person", "--val-fraction", "0.4")
    assert result.exit_code == 0, result.output
    names = ["shot0", "shot1", "shot2", "shot3", "more__shot4"]
    for name in names:
        split = name_split(name, 0.4).value
        assert (out / "images" / split / f"{name}.jpg").is_file()
        assert (out / "labels" / split / f"{name}.txt").is_file()
    lines = [ln for p in out.glob("labels/*/*.txt") for ln in p.read_text().splitlines()]
    assert lines and all(ln.startswith("0 ") for ln in lines)
    assert {s.value for s in Split} == {p.name for p in (out / "images").iterdir()}


def _garbage_video(tmp: Path) -> Path:
    path = tmp / "broken.mp4"
    path.write_bytes(b"\x00not a video at all" * 500)
    return path


def _other_dataset(tmp: Path, clip: Path) -> Path:
    out = tmp / "other"
    made = label(clip, "-o", out, "--classes", "person", "--every", "15", "--min-change", "0")
    assert made.exit_code == 0, made.output
    return out


def _unrelated_dir(tmp: Path) -> Path:
    out = tmp / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("not a dataset")
    return out


@pytest.mark.parametrize(
    ("make_source", "make_out", "extra", "message"),
    [
        # the source does not exist
        (lambda t, c: t / "nope.mp4", None, [], "does not exist"),
        # the source is not a decodable video
        (lambda t, c: _garbage_video(t), None, [], "unreadable"),
        # a class name the teacher does not know (typo)
        (lambda t, c: c, None, ["--classes", "persn,car"], "has no class 'persn'"),
        # a malformed class spec
        (lambda t, c: c, None, ["--classes", "person,,car"], "bad class list"),
        # an unknown teacher
        (lambda t, c: c, None, ["--teacher", "yolo-world"], "unknown teacher"),
        # the output dir holds a dataset made with other settings
        (lambda t, c: c, _other_dataset, ["--resume"], "holds another dataset"),
        # the output dir holds unrelated files
        (lambda t, c: c, lambda t, c: _unrelated_dir(t), [], "not empty"),
        # an image folder without images
        (lambda t, c: _unrelated_dir(t), None, [], "holds no images"),
    ],
)  # fmt: skip
def test_bad_input_fails_clearly(
    short_clip: Path, tmp_path: Path, make_source, make_out, extra: list[str], message: str
) -> None:
    """Each bad input exits 1 with a one-line error naming the problem."""
    source = make_source(tmp_path, short_clip)
    out = make_out(tmp_path, short_clip) if make_out else tmp_path / "out"
    args = ["--classes", CLASSES, "--every", "2", *extra]
    result = label(source, "-o", out, *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert result.stderr.startswith("edge-agent label: error: ")


def test_unreadable_image_in_folder_fails(image_folder: Path, tmp_path: Path) -> None:
    """A corrupt image in a folder stops the run with exit 1 naming the file."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "ok.jpg").write_bytes((image_folder / "shot0.jpg").read_bytes())
    (folder / "zz_bad.jpg").write_bytes(b"\xff\xd8 truncated")
    result = label(folder, "-o", tmp_path / "out", "--classes", "person")
    assert result.exit_code == 1
    assert "zz_bad.jpg is unreadable" in result.stderr
