"""`edge-agent label`: teacher-label a video or an image folder into a YOLO dataset."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.cli_common import (
    fail,
    gap_option,
    min_change_option,
    out_option,
    progress_option,
    shown_option,
    val_fraction_option,
)
from agent.label.teachers import teacher_names

if TYPE_CHECKING:
    from agent.label.dataset import DatasetSpec
    from agent.label.plan import ClassMap
    from agent.label.runner import LabelStats
    from agent.label.teachers import Teacher

DEFAULT_TEACHER = "ssd-mobilenet-v2"
ASSUMED_FPS = 30.0  # for --gap when a container declares no frame rate


class _TqdmProgress:
    """A tqdm bar on stderr (the `Progress` interface of `agent.label.runner`)."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total or None, desc=desc, unit="img", file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


@click.command("label")
@click.argument("source", type=click.Path(path_type=Path))
@out_option("Dataset directory to create (or continue with --resume).")
@shown_option(
    "--teacher", default=DEFAULT_TEACHER, help=f"Teacher detector: {', '.join(teacher_names())}."
)
@click.option(
    "--classes",
    required=True,
    help="Teacher labels to keep and their dataset class: 'person=person,car=car,truck=car' "
    "or just 'person,car'. Class ids follow first appearance.",
)
@shown_option(
    "--conf",
    "min_confidence",
    default=0.5,
    type=click.FloatRange(0.0, 1.0),
    help="Minimum teacher confidence of a kept box.",
)
@shown_option(
    "--every", default=5, type=click.IntRange(min=1), help="Video: consider every Nth frame."
)
@min_change_option(
    "Video: skip a frame whose 64x48 grey thumbnail differs from the last kept one by "
    "less than this mean absolute level (0..255); 0 keeps all."
)
@val_fraction_option("Share held out for validation: the end of a video, a name hash for folders.")
@gap_option(
    1.0,
    "Video: seconds of frames dropped between the train and the val part "
    "(30 fps assumed when the file declares none).",
)
@shown_option(
    "--jpeg-quality",
    default=95,
    type=click.IntRange(1, 100),
    help="JPEG quality of the written images.",
)
@click.option(
    "--teacher-model",
    default=None,
    help="florence2: model directory or hub id (e.g. florence-community/Florence-2-base).",
)
@click.option(
    "--task",
    default=None,
    help="Label kind: 'detect' (YOLO boxes, default) or 'segment' (Ultralytics polygons; "
    "florence2 only: each box is outlined with <REGION_TO_SEGMENTATION>). A Florence-2 task "
    "token here (e.g. '<OD>') is the same as --teacher-task.",
)
@click.option(
    "--teacher-task",
    default=None,
    help="florence2: box task token, e.g. '<CAPTION_TO_PHRASE_GROUNDING>' (default) or '<OD>'.",
)
@click.option(
    "--teacher-runtime",
    default=None,
    help="florence2: torch-int8 (default), torch-fp32, torch-fp16-cuda, onnx-int8, onnx-fp32.",
)
@click.option("--resume", is_flag=True, help="Continue a dataset made with the same settings.")
@progress_option()
def label_command(
    source: Path,
    out: Path,
    teacher: str,
    classes: str,
    min_confidence: float,
    every: int,
    min_change: float,
    val_fraction: float,
    gap_s: float,
    jpeg_quality: int,
    teacher_model: str | None,
    task: str | None,
    teacher_task: str | None,
    teacher_runtime: str | None,
    resume: bool,
    progress: bool,
) -> None:
    """Label SOURCE (a video file or a folder of images) with a teacher into a YOLO dataset.

    Writes images/{train,val}, labels/{train,val} and data.yaml under --out. Videos are
    split by time (the last --val-fraction is val, with --gap seconds dropped between).
    """
    from agent.label import dataset, runner
    from agent.label.plan import parse_class_map
    from agent.label.teachers import TeacherError

    kind, options = _kind_and_options(teacher, task, teacher_task, teacher_model, teacher_runtime)
    try:
        class_map = parse_class_map(classes)
    except ValueError as err:
        fail("label", str(err))
    if not source.exists():
        fail("label", f"source {source} does not exist")
    spec = dataset.DatasetSpec(
        source=str(source.resolve()),
        source_kind="images" if source.is_dir() else "video",
        teacher=teacher,
        classes=class_map.spec(),
        class_names=list(class_map.names),
        min_confidence=min_confidence,
        every=every,
        min_change=min_change,
        val_fraction=val_fraction,
        gap_frames=_gap_frames(source, gap_s),
        jpeg_quality=jpeg_quality,
        task=kind,
    )
    model = _open_teacher(source, spec, class_map, options)
    try:
        dataset.prepare_output(out, spec, resume)
        bar = _TqdmProgress if progress else runner.no_progress
        stats = runner.run(source, out, spec, class_map, model, progress=bar)
    except (dataset.LabelError, TeacherError) as err:
        fail("label", str(err))
    finally:
        model.close()
    click.echo(_summary(out, stats, class_map.names))


def _teacher_options(
    teacher: str, model: str | None, task: str | None, runtime: str | None
) -> dict[str, str]:
    """The teacher's own options that were given; fail on an unknown teacher or foreign flags."""
    if teacher not in teacher_names():
        fail("label", f"unknown teacher {teacher!r}; choose one of {', '.join(teacher_names())}")
    given = {"model": model, "task": task, "runtime": runtime}
    options = {k: v for k, v in given.items() if v is not None}
    if options and teacher != "florence2":
        flags = ", ".join(f"--teacher-{k}" for k in options)
        fail("label", f"{flags}: only for --teacher florence2")
    return options


def _kind_and_options(
    teacher: str, task: str | None, teacher_task: str | None, model: str | None, runtime: str | None
) -> tuple[str, dict[str, str]]:
    """(label kind, the teacher's options) from the flags; fail on a combination that cannot
    work (segment needs Florence-2, the only teacher that outlines)."""
    kind, florence_task = _label_kind(task, teacher_task)
    options = _teacher_options(teacher, model, florence_task, runtime)
    if kind == "segment":
        if teacher != "florence2":
            fail(
                "label", "--task segment needs --teacher florence2 (the only teacher that outlines)"
            )
        options["segment"] = "true"
    return kind, options


def _label_kind(task: str | None, teacher_task: str | None) -> tuple[str, str | None]:
    """(dataset kind, Florence-2 task token or None) from --task and --teacher-task."""
    if task is None or task in ("detect", "segment"):
        return task or "detect", teacher_task
    if task.startswith("<") and teacher_task is None:
        return "detect", task
    fail(
        "label",
        f"--task must be 'detect' or 'segment' (Florence-2 tokens go to --teacher-task): {task!r}",
    )


def _gap_frames(source: Path, gap_s: float) -> int:
    """Frames dropped between train and val: --gap at the video's rate (0 for an image folder)."""
    from agent.label import media

    if source.is_dir():
        return 0
    return round(gap_s * (media.video_fps(source) or ASSUMED_FPS))


def _open_teacher(
    source: Path, spec: DatasetSpec, class_map: ClassMap, options: dict[str, str]
) -> Teacher:
    """Check the input is readable, then load the teacher and check it knows every label.

    Runs before anything is written under --out, so bad input leaves no half-made dataset.
    """
    from agent.label import dataset, media
    from agent.label.plan import unknown_labels
    from agent.label.teachers import TeacherError, create_teacher

    try:
        if spec.source_kind == "video":
            next(media.iter_video(source))
        else:
            media.list_images(source)
        model = create_teacher(spec.teacher, list(class_map.mapping), **options)
    except (dataset.LabelError, TeacherError) as err:
        fail("label", str(err))
    missing = unknown_labels(class_map, model.vocabulary)
    if missing:
        model.close()
        fail(
            "label",
            f"teacher {spec.teacher!r} has no class {', '.join(map(repr, missing))}; "
            f"it knows: {', '.join(sorted(model.vocabulary or ()))}",
        )
    return model


def _summary(out: Path, stats: LabelStats, names: Sequence[str]) -> str:
    """The one-line report printed when labelling is done."""
    boxes = ", ".join(f"{name} {stats.boxes[name]}" for name in names)
    return (
        f"{out}: labelled {stats.labelled} image(s), {stats.already_done} already done; "
        f"train {stats.planned.get('train', 0)}, val {stats.planned.get('val', 0)}, "
        f"{stats.near_duplicates} near-duplicate(s) skipped, {stats.dropped_for_gap} dropped "
        f"for the split gap; boxes: {boxes}"
        + (
            f"; {stats.unsegmented} box(es) without an outline left out"
            if stats.unsegmented
            else ""
        )
    )
