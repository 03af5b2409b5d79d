"""Teacher registry and the real SSD-MobileNet-v2 teacher."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import numpy as np
import pytest

from agent.label.teachers import TEACHERS, TeacherError, create_teacher, teacher_names
from agent.label.teachers.ssd_mobilenet import SsdMobileNetV2Teacher
from tests.label.conftest import demo_frames


@pytest.fixture(scope="module")
def ssd() -> Iterator[SsdMobileNetV2Teacher]:
    """The real SSD-MobileNet-v2 teacher, loaded once."""
    teacher = create_teacher("ssd-mobilenet-v2", ["person", "car"])
    assert isinstance(teacher, SsdMobileNetV2Teacher)
    yield teacher
    teacher.close()


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_registry_entries_resolve(name: str) -> None:
    """Every registry line points at an importable callable."""
    module_name, _, attr_path = TEACHERS[name].partition(":")
    obj: object = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    assert callable(obj)


def test_unknown_teacher_lists_the_known_ones() -> None:
    """Asking for a teacher that does not exist names the ones that do."""
    with pytest.raises(TeacherError, match="ssd-mobilenet-v2"):
        create_teacher("yolo-world", ["person"])
    assert "ssd-mobilenet-v2" in teacher_names()


def test_ssd_finds_people_in_a_street_frame(ssd: SsdMobileNetV2Teacher) -> None:
    """On a real frame of the demo clip the teacher reports confident people inside the image."""
    frame = demo_frames(1)[0]
    boxes = ssd.detect(frame)
    people = [b for b in boxes if b.label == "person" and b.confidence >= 0.5]
    assert len(people) >= 2
    h, w = frame.shape[:2]
    assert all(0 <= b.x1 < b.x2 <= w and 0 <= b.y1 < b.y2 <= h for b in people)


def test_ssd_sees_nothing_in_a_flat_image(ssd: SsdMobileNetV2Teacher) -> None:
    """A uniform grey image gives no confident detection."""
    boxes = ssd.detect(np.full((240, 320, 3), 128, dtype=np.uint8))
    assert [b for b in boxes if b.confidence >= 0.5] == []


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64), dtype=np.uint8),  # grey, no channel axis
        np.zeros((64, 64, 3), dtype=np.float32),  # float instead of uint8
    ],
)
def test_ssd_rejects_non_bgr_images(ssd: SsdMobileNetV2Teacher, image: np.ndarray) -> None:
    """Anything but an (h, w, 3) uint8 image raises TeacherError."""
    with pytest.raises(TeacherError, match="expected"):
        ssd.detect(image)


def test_closed_teacher_refuses_work() -> None:
    """After close(), detect raises instead of crashing in OpenCV."""
    teacher = create_teacher("ssd-mobilenet-v2", ["person"])
    teacher.close()
    teacher.close()  # twice is fine
    with pytest.raises(TeacherError, match="closed"):
        teacher.detect(np.zeros((64, 64, 3), dtype=np.uint8))
