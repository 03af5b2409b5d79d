"""The labelling run: plan the samples, ask the teacher, write the dataset.

I/O is confined to `agent.label.media` (input) and `agent.label.dataset` (output); the
teacher is injected, so this module only sequences the pure decisions of `plan`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

from agent.label import dataset, media
from agent.label.plan import (
    THUMB_SIZE,
    ClassMap,
    FrameSampler,
    Split,
    label_text,
    name_split,
    select_boxes,
    time_split,
    unsegmented,
)
from agent.label.teachers import Teacher

log = structlog.get_logger(__name__)

ProgressFactory = Callable[[int, str], "Progress"]


class Progress:
    """Progress sink: `update(n)` after each step, `close()` at the end (no-op here)."""

    def update(self, n: int = 1) -> None:
        """Advance by `n` steps."""

    def close(self) -> None:
        """Finish the bar."""


def no_progress(total: int, desc: str) -> Progress:
    """A progress factory that shows nothing."""
    return Progress()


@dataclass
class LabelStats:
    """What a run did."""

    planned: dict[str, int] = field(default_factory=dict)
    dropped_for_gap: int = 0
    near_duplicates: int = 0
    already_done: int = 0
    labelled: int = 0
    boxes: Counter[str] = field(default_factory=Counter)
    unsegmented: int = 0


@dataclass(frozen=True)
class Sample:
    """One planned sample: where it goes and how to find it in the source."""

    stem: str
    split: Split
    frame_index: int | None = None
    path: Path | None = None


def plan_video(
    path: Path, spec: dataset.DatasetSpec, progress: ProgressFactory
) -> tuple[list[Sample], LabelStats]:
    """First pass over the video: sample frames, skip near-duplicates, split by time."""
    sampler = FrameSampler(every=spec.every, min_change=spec.min_change)
    kept: list[int] = []
    on_grid = 0
    bar = progress(media.video_info(path).frames, "sampling")
    for index, frame in media.iter_video(path):
        bar.update(1)
        if not sampler.on_grid(index):
            continue
        on_grid += 1
        if sampler.offer(index, media.thumbnail(frame, THUMB_SIZE)):
            kept.append(index)
    bar.close()
    splits = time_split(kept, spec.val_fraction, spec.gap_frames)
    stats = LabelStats(near_duplicates=on_grid - len(kept))
    samples = []
    for index, split in splits.items():
        if split is None:
            stats.dropped_for_gap += 1
            continue
        samples.append(Sample(stem=f"{path.stem}_{index:06d}", split=split, frame_index=index))
    return samples, stats


def plan_images(folder: Path, spec: dataset.DatasetSpec) -> tuple[list[Sample], LabelStats]:
    """Every image of the folder, split by a stable hash of its name."""
    samples = [
        Sample(stem=stem, split=name_split(stem, spec.val_fraction), path=p)
        for stem, p in media.list_images(folder)
    ]
    return samples, LabelStats()


def run(
    source: Path,
    out: Path,
    spec: dataset.DatasetSpec,
    class_map: ClassMap,
    teacher: Teacher,
    progress: ProgressFactory = no_progress,
) -> LabelStats:
    """Label `source` (video file or image folder) into the dataset at `out`.

    `dataset.prepare_output` must have been called. Samples whose label file exists are
    skipped, so an interrupted run continues where it stopped.
    """
    if spec.source_kind == "video":
        samples, stats = plan_video(source, spec, progress)
    else:
        samples, stats = plan_images(source, spec)
    stats.planned = dict(Counter(s.split.value for s in samples))
    todo = [s for s in samples if not dataset.is_done(out, s.split, s.stem)]
    stats.already_done = len(samples) - len(todo)
    log.info("label_plan", planned=stats.planned, todo=len(todo), done=stats.already_done)
    bar = progress(len(todo), "labelling")
    for sample, image in _load(source, spec, todo):
        h, w = image.shape[:2]
        boxes = select_boxes(teacher.detect(image), class_map, spec.min_confidence)
        text = label_text(boxes, w, h, spec.task)
        dataset.write_sample(out, sample.split, sample.stem, image, text, spec.jpeg_quality)
        if spec.task == "segment":
            stats.unsegmented += unsegmented(boxes, w, h)
        stats.labelled += 1
        stats.boxes.update(class_map.names[b.class_id] for b in boxes)
        bar.update(1)
    bar.close()
    if stats.labelled != len(todo):
        raise dataset.LabelError(
            f"{source} gave only {stats.labelled} of {len(todo)} planned samples on the "
            "second read; re-run with --resume"
        )
    return stats


def _load(
    source: Path, spec: dataset.DatasetSpec, todo: list[Sample]
) -> Iterator[tuple[Sample, npt.NDArray[np.uint8]]]:
    if spec.source_kind == "images":
        for sample in todo:
            if sample.path is None:
                raise dataset.LabelError(f"image sample {sample.stem} has no path")
            yield sample, media.read_image(sample.path)
        return
    wanted = {s.frame_index: s for s in todo}
    if not wanted:
        return
    last = max(i for i in wanted if i is not None)
    for index, frame in media.iter_video(source):
        sample = wanted.get(index)
        if sample is not None:
            yield sample, frame
        if index >= last:
            return
