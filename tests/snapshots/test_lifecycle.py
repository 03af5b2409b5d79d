"""Snapshots and camera-wide counts in the event lifecycle (real event machine, real files)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from agent.contracts.events import EndReason, EventType
from agent.contracts.topics import Topics
from agent.events.config import ZoneConfig
from agent.events.emitter import EmitterContext, EventEmitter, MachineStep
from agent.events.machine import CameraEvents, EventRules, Observation
from agent.snapshots.config import SnapshotsConfig
from agent.snapshots.keeper import SnapshotKeeper
from agent.snapshots.lifecycle import EventExtras
from agent.snapshots.writer import SnapshotWriter

BOOT = "0123456789abcdef"
RULES = EventRules(
    min_hits=2,
    max_disappeared_frames=2,
    max_disappeared_s=100.0,
    zone_inertia_frames=1,
    stationary_s=100.0,
    stationary_px=1.0,
)
IMAGE = np.full((576, 768, 3), 90, np.uint8)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def setup(tmp_path: Path) -> tuple[EventExtras, CameraEvents, list[tuple[str, bytes]], Clock]:
    published: list[tuple[str, bytes]] = []
    clock = Clock()
    cfg = SnapshotsConfig(min_interval_s=10.0)
    writer = SnapshotWriter(
        cfg,
        tmp_path,
        Topics("dev1"),
        lambda t, p: published.append((t, p)),
        threaded=False,
    )
    keeper = SnapshotKeeper(writer, clock=clock)
    extras = EventExtras(BOOT, Topics("dev1"), lambda t, p: published.append((t, p)), keeper)
    return extras, CameraEvents(RULES), published, clock


def step(extras: EventExtras, machine: CameraEvents, ts: float, obs: list[Observation]) -> list:
    out = extras.after_frame(
        MachineStep("yard", ts, machine, machine.observe(ts, obs), (IMAGE, obs))
    )
    return out.events


def person(score: float, x: float = 100) -> Observation:
    return Observation(track_id=7, label="person", score=score, box=(x, 100, x + 80, 300))


def test_new_carries_the_first_snapshot_and_end_the_best(tmp_path: Path) -> None:
    """`new` has the snapshot written in its own frame (no extra update); a better frame
    within the interval waits; `end` names the best frame's file, published retained."""
    extras, machine, published, clock = setup(tmp_path)
    assert step(extras, machine, 1.0, [person(0.5)]) == []
    (new,) = step(extras, machine, 2.0, [person(0.6)])
    assert new.type == EventType.NEW and new.snapshot.path == f"snapshots/yard/{BOOT}-yard-7.jpg"
    clock.t = 1.0
    assert step(extras, machine, 3.0, [person(0.9, x=120)]) == []  # better, rate-limited
    step(extras, machine, 4.0, [])
    (end,) = step(extras, machine, 5.0, [])
    assert end.type == EventType.END and end.snapshot.score == 0.9 and end.snapshot.box[0] == 120
    snaps = [p for t, p in published if t == "edge/dev1/cameras/yard/snapshot/person"]
    assert len(snaps) == 2 and snaps[-1] == (tmp_path / end.snapshot.path).read_bytes()


def test_a_better_frame_after_the_interval_is_an_update(tmp_path: Path) -> None:
    """Past `min_interval_s` a better frame is written and becomes an `update` event."""
    extras, machine, _published, clock = setup(tmp_path)
    step(extras, machine, 1.0, [person(0.5)])
    step(extras, machine, 2.0, [person(0.6)])
    clock.t = 11.0
    (update,) = step(extras, machine, 3.0, [person(0.8)])
    assert update.type == EventType.UPDATE and update.snapshot.score == 0.8


def test_camera_counts_follow_new_and_end(tmp_path: Path) -> None:
    """The retained objects count goes 1 at `new` and back to 0 at `end` (model swap too)."""
    extras, machine, published, _clock = setup(tmp_path)
    step(extras, machine, 1.0, [person(0.5)])
    step(extras, machine, 2.0, [person(0.6)])
    out = machine.end_all(3.0, EndReason.MODEL_SWAP)
    (end,) = extras.after_frame(MachineStep("yard", 3.0, machine, out)).events
    assert end.type == EventType.END and end.snapshot is not None
    counts = [p for t, p in published if t == "edge/dev1/cameras/yard/objects/person"]
    assert counts == [b"1", b"0"]


def test_a_snapshot_rides_on_an_update_of_the_same_frame(tmp_path: Path) -> None:
    """A better snapshot in the frame where the object enters a zone: one `update`, with both."""
    extras, _machine, _published, clock = setup(tmp_path)
    zone = ZoneConfig(id="lower", polygon=[(0, 400), (768, 400), (768, 576), (0, 576)])
    machine = CameraEvents(replace(RULES, zones=(zone,)))
    step(extras, machine, 1.0, [person(0.5)])
    step(extras, machine, 2.0, [person(0.6)])
    clock.t = 11.0
    inside = Observation(track_id=7, label="person", score=0.9, box=(100, 300, 180, 450))
    (update,) = step(extras, machine, 3.0, [inside])
    assert update.type == EventType.UPDATE and update.zones_current == ("lower",)
    assert update.snapshot is not None and update.snapshot.score == 0.9


def test_events_ended_by_expiry_get_their_snapshot_and_count(tmp_path: Path) -> None:
    """A camera that stops delivering frames: the emitter's expiry ends the event through the
    extras too (final snapshot in the `end`, camera count back to 0)."""
    extras, _machine, published, _clock = setup(tmp_path)
    sent: list[dict] = []

    def submit(_camera: str, _seq: int, payload: bytes) -> bool:
        sent.append(json.loads(payload))
        return True

    ctx = EmitterContext("dev1", BOOT, Topics("dev1"), 1_800_000_000.0, submit, lambda t, p: None)
    emitter = EventEmitter(ctx, {"yard": RULES}, None, extras)
    for i in range(3):
        emitter.on_frame("yard", 1_800_000_001.0 + i, [person(0.5 + i / 10)], IMAGE)
    emitter.expire(1_800_000_500.0)
    assert [e["type"] for e in sent] == ["new", "end"]
    assert sent[-1]["snapshot"]["path"] == f"snapshots/yard/{BOOT}-yard-7.jpg"
    counts = [p for t, p in published if t == "edge/dev1/cameras/yard/objects/person"]
    assert counts == [b"1", b"0"]
