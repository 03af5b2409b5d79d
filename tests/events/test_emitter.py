"""The emitter: seq per camera on the events stream, the open-event file, restart closing,
snapshots, retained counts."""

from __future__ import annotations

import json
from pathlib import Path

from agent.contracts.events import EndReason, EventMessage, SnapshotRef
from agent.contracts.topics import Topics
from agent.events.emitter import EmitterContext, EventEmitter
from agent.events.journal import OpenEvents
from agent.events.machine import EventRules, Observation
from tests.events.test_machine import GATE, ZONE

RULES = EventRules(3, 5, 100.0, 1, 5.0, 10.0, (ZONE,), (GATE,))


class Outbox:
    """What the publisher would get: (camera, seq, event) and retained (topic, payload)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, EventMessage]] = []
        self.retained: dict[str, bytes] = {}

    def submit(self, camera: str, seq: int, payload: bytes) -> bool:
        self.sent.append((camera, seq, EventMessage.model_validate_json(payload)))
        return True

    def retain(self, topic: str, payload: bytes) -> None:
        self.retained[topic] = payload


def emitter(state: Path, boot: str, out: Outbox) -> EventEmitter:
    ctx = EmitterContext("dev", boot, Topics("dev"), 1_800_000_000.0, out.submit, out.retain)
    return EventEmitter(ctx, {"cam": RULES}, OpenEvents(state))


def walker(x: float, y: float) -> list[Observation]:
    return [Observation(7, "person", 0.9, (x - 20, y - 100, x + 20, y))]


def test_events_counts_and_restart_close(tmp_path: Path) -> None:
    """A person walks into the zone across the gate; the daemon dies; the next boot ends it."""
    out = Outbox()
    em = emitter(tmp_path, "aaaaaaaa", out)
    for i, x in enumerate([300, 310, 320, 500]):
        em.on_frame("cam", 1_800_000_001.0 + i, walker(x, 400))
    assert [(s, e.type.value) for _, s, e in out.sent] == [(0, "new"), (1, "update")]
    t = Topics("dev")
    assert out.retained[t.zone_count("cam", "yard", "person")] == b"1"
    line = json.loads(out.retained[t.line_count("cam", "gate", "person")])
    assert line == {"in": 1, "out": 0, "since": "2027-01-15T08:00:00.000Z"}
    opened = json.loads((tmp_path / "events-open.json").read_text())
    assert list(opened) == ["aaaaaaaa-cam-7"]

    # kill -9: the emitter is gone without close(); the next boot closes the event
    out2 = Outbox()
    em2 = emitter(tmp_path, "bbbbbbbb", out2)
    assert em2.close_previous() == 1
    ((cam, seq, end),) = out2.sent
    assert (cam, seq, end.id, end.boot_id) == ("cam", 0, "aaaaaaaa-cam-7", "bbbbbbbb")
    assert end.end_reason == EndReason.RESTART and end.end_ts == out.sent[-1][2].ts
    assert out2.retained[t.zone_count("cam", "yard", "person")] == b"0"
    assert json.loads((tmp_path / "events-open.json").read_text()) == {}
    em2.on_frame("cam", 1_800_000_100.0, [])
    assert emitter(tmp_path, "cccccccc", Outbox()).close_previous() == 0


def test_snapshot_update_listeners_and_clean_stop(tmp_path: Path) -> None:
    """A kept snapshot sends an update naming it; close() ends the event; listeners see all."""
    out = Outbox()
    em = emitter(tmp_path, "aaaaaaaa", out)
    seen: list[str] = []
    em.event_listeners.append(lambda e: seen.append(e.type.value))
    for i in range(3):
        em.on_frame("cam", 1_800_000_001.0 + i, walker(100, 200))
    snap = SnapshotRef(ts="2026-01-15T08:00:03.000Z", box=(80, 100, 120, 200), score=0.9, path="s")
    assert em.snapshot_kept("cam", 7, snap, 1_800_000_004.0)
    assert not em.snapshot_kept("cam", 99, snap, 1_800_000_004.0)
    em.close(1_800_000_005.0)
    assert seen == ["new", "update", "end"]
    end = out.sent[-1][2]
    assert end.end_reason == EndReason.STOP and end.snapshot == snap
    assert [s for _, s, _ in out.sent] == [0, 1, 2]
    assert json.loads((tmp_path / "events-open.json").read_text()) == {}


def test_a_camera_without_rules_gets_no_events_and_one_added_later_does(tmp_path: Path) -> None:
    """A camera not (or no longer) configured is skipped; once a reload gives it rules, its
    frames make events (a camera added live used to raise KeyError on the inference thread)."""
    out = Outbox()
    rules: dict[str, EventRules] = {}
    ctx = EmitterContext("dev", "aaaaaaaa", Topics("dev"), 1_800_000_000.0, out.submit, out.retain)
    em = EventEmitter(ctx, rules, OpenEvents(tmp_path))
    for i in range(4):
        em.on_frame("cam-new", 1_800_000_001.0 + i, walker(300, 400))
    assert out.sent == []
    rules["cam-new"] = RULES
    for i in range(4):
        em.on_frame("cam-new", 1_800_000_010.0 + i, walker(300, 400))
    assert [e.type.value for _, _, e in out.sent] == ["new"]


def test_changed_zones_apply_from_the_next_frame_and_events_carry_on(tmp_path: Path) -> None:
    """A reload that removes the camera's zone: the open event leaves it (an `update`), the
    zone's count drops to 0, the event and its id carry on, nothing ends."""
    out = Outbox()
    rules = {"cam": RULES}
    ctx = EmitterContext("dev", "aaaaaaaa", Topics("dev"), 1_800_000_000.0, out.submit, out.retain)
    em = EventEmitter(ctx, rules, OpenEvents(tmp_path))
    for i in range(3):
        em.on_frame("cam", 1_800_000_001.0 + i, walker(300, 400))
    t = Topics("dev")
    assert out.retained[t.zone_count("cam", "yard", "person")] == b"1"
    assert out.sent[-1][2].zones_current == ["yard"]
    rules["cam"] = EventRules(3, 5, 100.0, 1, 5.0, 10.0, (), (GATE,))  # the zone removed
    for i in range(4, 6):  # (still for under `stationary_s`: no stationary update)
        em.on_frame("cam", 1_800_000_000.0 + i, walker(300, 400))
    assert [e.type.value for _, _, e in out.sent] == ["new", "update"]
    left = out.sent[-1][2]
    assert left.zones_current == [] and left.id == out.sent[0][2].id
    assert out.retained[t.zone_count("cam", "yard", "person")] == b"0"
