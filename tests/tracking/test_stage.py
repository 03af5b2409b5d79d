"""The tracking stage: a model swap ends the camera's events and restarts its tracks with new
ids; a failure never reaches the inference loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.contracts.events import EndReason
from agent.contracts.topics import Topics
from agent.events.emitter import EmitterContext, EventEmitter
from agent.tracking.build import make_tracker
from agent.tracking.config import TrackingConfig
from agent.tracking.stage import TrackingStage
from agent.types import Detections, Frame, ModelInfo
from tests.events.test_emitter import RULES, Outbox
from tests.tracking.test_tracker import dets

OLD = ModelInfo("demo", 1, "a" * 64, (320, 320), ("person", "car"))
NEW = ModelInfo("demo", 2, "b" * 64, (320, 320), ("person", "car"))
IMAGE = np.zeros((4, 4, 3), np.uint8)


def frame(i: int) -> Frame:
    return Frame("cam", IMAGE, 1_800_000_000.0 + i / 10, float(i), i)


def person(i: int) -> Detections:
    return dets([(100 + 2 * i, 100, 140 + 2 * i, 200)])


def test_model_swap_ends_events_and_ids_go_on(tmp_path: Path) -> None:
    """The first result of a new model ends the open event (model_swap); the object gets a
    new id and a new event."""
    out = Outbox()
    ctx = EmitterContext("dev", "aaaaaaaa", Topics("dev"), 1_800_000_000.0, out.submit, out.retain)
    emitter = EventEmitter(ctx, {"cam": RULES})
    stage = TrackingStage(make_tracker(TrackingConfig(enabled=True, min_hits=2)), emitter)
    before = [stage.on_result(frame(i), person(i), OLD) for i in range(6)]
    after = [stage.on_result(frame(i), person(i), NEW) for i in range(6, 12)]
    assert before[-1] == [0] and after[-1] == [1]
    got = [(e.type.value, e.track_id, e.end_reason) for _, _, e in out.sent]
    assert got == [("new", 0, None), ("end", 0, EndReason.MODEL_SWAP), ("new", 1, None)]


def test_a_failure_leaves_boxes_untracked_and_is_counted() -> None:
    """An exception inside the stage gives null ids for the frame, never an exception."""

    def broken(_camera: str, _seq: int, _payload: bytes) -> bool:
        raise RuntimeError("boom")

    ctx = EmitterContext(
        "dev", "aaaaaaaa", Topics("dev"), 1_800_000_000.0, broken, lambda _t, _p: None
    )
    emitter = EventEmitter(ctx, {"cam": RULES})
    stage = TrackingStage(make_tracker(TrackingConfig(enabled=True, min_hits=1)), emitter)
    ids = [stage.on_result(frame(i), person(i), OLD) for i in range(5)]
    assert [None] in ids and stage.failures == 1


def test_tick_ends_the_events_of_a_silent_camera(tmp_path: Path) -> None:
    """The supervisor's tick ends events of a camera that stopped delivering frames."""
    out = Outbox()
    ctx = EmitterContext("dev", "aaaaaaaa", Topics("dev"), 1_800_000_000.0, out.submit, out.retain)
    emitter = EventEmitter(ctx, {"cam": RULES})
    stage = TrackingStage(make_tracker(TrackingConfig(enabled=True, min_hits=2)), emitter)
    for i in range(6):
        stage.on_result(frame(i), person(i), OLD)
    stage.tick(1_800_000_050.0)  # RULES: 100 s
    assert [e.type.value for _, _, e in out.sent] == ["new"]
    stage.tick(1_800_000_200.0)
    assert [(e.type.value, e.end_reason) for _, _, e in out.sent][-1] == ("end", EndReason.LOST)
