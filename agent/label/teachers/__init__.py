"""Teacher detectors: big (slow) models whose boxes become a YOLO training set.

The interface is deliberately narrow: a BGR image goes in, labelled boxes in pixels come
out. Teachers are found by name in `TEACHERS`; adding one is one file in this package
(a class with a `from_labels` constructor) plus one line in `TEACHERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class TeacherError(Exception):
    """A teacher could not be found, loaded or run; the message says why."""


@dataclass(frozen=True)
class LabelledBox:
    """One teacher detection in pixels of the input image.

    Attributes:
        label: the teacher's own class name (e.g. COCO 'person', 'truck').
        confidence: score in [0, 1]; NaN when the teacher gives no score (Florence-2).
        x1, y1, x2, y2: box corners in pixels, x1 <= x2 and y1 <= y2.
        polygons: the object's outline(s) as (x, y) pixel vertices, when the teacher
            segments (Florence-2 with `--task segment`); () otherwise.
    """

    label: str
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()


@runtime_checkable
class Teacher(Protocol):
    """A detector that labels images for training.

    `vocabulary` is the set of labels the teacher can emit, or None for open-vocabulary
    teachers (which are told the wanted labels at construction).
    """

    name: str
    vocabulary: frozenset[str] | None

    def detect(self, image: npt.NDArray[np.uint8]) -> list[LabelledBox]:
        """Detect objects in one (h, w, 3) uint8 BGR image."""
        ...

    def close(self) -> None:
        """Free the network. Safe to call twice."""
        ...


class TeacherFactory(Protocol):
    """Builds a loaded teacher that should look for `labels` (its own label names)."""

    def __call__(self, labels: Sequence[str], **options: str) -> Teacher: ...


# name -> "module:callable"; imported lazily so heavy dependencies load only when used.
TEACHERS: dict[str, str] = {
    "ssd-mobilenet-v2": "agent.label.teachers.ssd_mobilenet:SsdMobileNetV2Teacher.from_labels",
    "florence2": "agent.label.teachers.florence2:Florence2Teacher.from_labels",
}


def teacher_names() -> list[str]:
    """Names accepted by `create_teacher`, sorted."""
    return sorted(TEACHERS)


def create_teacher(name: str, labels: Sequence[str], **options: str) -> Teacher:
    """Load the teacher called `name`, asked to look for `labels`.

    `options` are teacher-specific settings (Florence-2: model, task, runtime).

    Raises:
        TeacherError: unknown name, or the backend failed to load.
    """
    target = TEACHERS.get(name)
    if target is None:
        raise TeacherError(f"unknown teacher {name!r}; choose one of {', '.join(teacher_names())}")
    module_name, _, attr_path = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    factory: TeacherFactory = obj  # type: ignore[assignment]
    return factory(labels, **options)
