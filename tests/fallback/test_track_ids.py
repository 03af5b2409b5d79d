"""Florence-2 refinements keep the track ids of the YOLO message they refine (pure)."""

from __future__ import annotations

from agent.contracts.payloads import Detection
from agent.fallback.message import inherit_track_ids


def yolo(box: tuple[float, float, float, float], tid: int | None) -> Detection:
    return Detection(label="person", class_id=0, confidence=0.5, box=box, track_id=tid)


def test_each_box_takes_the_id_of_the_yolo_box_it_overlaps_most() -> None:
    """Best overlaps first, each id once; no overlap (or an untracked box) gives null."""
    ys = [yolo((0, 0, 100, 100), 4), yolo((200, 0, 300, 100), 9), yolo((400, 0, 500, 100), None)]
    boxes = [
        (205.0, 5.0, 300.0, 100.0),  # on id 9
        (2.0, 0.0, 98.0, 100.0),  # on id 4
        (10.0, 0.0, 100.0, 100.0),  # also on id 4, but worse: id 4 is taken
        (400.0, 0.0, 500.0, 100.0),  # on the untracked box
        (600.0, 0.0, 700.0, 100.0),  # on nothing
    ]
    assert inherit_track_ids(boxes, ys) == [9, 4, None, None, None]
