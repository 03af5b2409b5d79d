"""The per-camera event state machine (pure): new, update only on change, one end per new,
zone and line counts."""

from __future__ import annotations

from agent.contracts.events import EndReason, EventType
from agent.events.config import LineConfig, ZoneConfig
from agent.events.machine import CameraEvents, EventRules, Observation

ZONE = ZoneConfig(id="yard", polygon=[(0, 300), (768, 300), (768, 576), (0, 576)])
GATE = LineConfig(id="gate", points=((400, 0), (400, 576)))  # top to bottom: `in` = rightwards


def rules(**kw: object) -> EventRules:
    base: dict[str, object] = {
        "min_hits": 3,
        "max_disappeared_frames": 5,
        "max_disappeared_s": 100.0,
        "zone_inertia_frames": 2,
        "stationary_s": 5.0,
        "stationary_px": 10.0,
        "zones": (ZONE,),
        "lines": (GATE,),
    }
    base.update(kw)
    return EventRules(**base)  # type: ignore[arg-type]


def person(x: float, y: float, tid: int = 1, score: float = 0.8) -> Observation:
    """A 40x100 person whose feet are at (x, y)."""
    return Observation(tid, "person", score, (x - 20, y - 100, x + 20, y))


def kinds(machine: CameraEvents, frames: list[list[Observation]], t0: float = 0.0) -> list[str]:
    out = []
    for i, obs in enumerate(frames):
        out += [e.type.value for e in machine.observe(t0 + i * 0.1, obs).events]
    return out


def test_new_after_min_hits_then_nothing_without_change() -> None:
    """`new` on the third sighting; a steady object outside zones and lines adds nothing."""
    m = CameraEvents(rules())
    assert kinds(m, [[person(100, 200)]] * 10) == ["new"]


def test_end_after_max_disappeared_frames_exactly_once() -> None:
    """Gone for 5 frames: one `end` (lost); more empty frames add nothing."""
    m = CameraEvents(rules())
    got = kinds(m, [[person(100, 200)]] * 3 + [[]] * 10)
    assert got == ["new", "end"]


def test_end_after_max_disappeared_seconds() -> None:
    """A camera whose frames come slowly ends a track by time before the frame count."""
    m = CameraEvents(rules(max_disappeared_s=1.0))
    for i in range(3):
        m.observe(i * 0.1, [person(100, 200)])
    out = m.observe(5.0, [])
    assert [(e.type, e.end_reason) for e in out.events] == [(EventType.END, EndReason.LOST)]


def test_unconfirmed_track_ends_silently() -> None:
    """A track seen twice (below min_hits) never opens, so it never ends either."""
    m = CameraEvents(rules())
    assert kinds(m, [[person(100, 200)]] * 2 + [[]] * 10) == []


def test_zone_entry_with_inertia_updates_and_counts() -> None:
    """Entering needs 2 frames inside; the update names the zone; the count goes 1 then 0."""
    m = CameraEvents(rules())
    for i in range(3):
        m.observe(i * 0.1, [person(100, 200)])
    first = m.observe(0.3, [person(100, 350)])  # inside once: not yet
    assert first.events == [] and first.zone_counts == {}
    second = m.observe(0.4, [person(100, 350)])
    assert [e.type for e in second.events] == [EventType.UPDATE]
    assert second.events[0].zones_current == ("yard",)
    assert second.zone_counts == {("yard", "person"): 1}
    m.observe(0.5, [person(100, 200)])
    left = m.observe(0.6, [person(100, 200)])
    assert left.zone_counts == {("yard", "person"): 0}
    assert left.events[0].zones_current == () and left.events[0].dwell_s == {"yard": 0.2}


def test_jitter_on_a_zone_edge_does_not_flap() -> None:
    """Alternating in/out every frame never reaches the inertia: no update, no count."""
    m = CameraEvents(rules())
    frames = [[person(100, 200)]] * 3 + [[person(100, 301 if i % 2 else 299)] for i in range(20)]
    assert kinds(m, frames) == ["new"]


def test_each_line_crossing_counted_once() -> None:
    """Right, left, right across the gate: three crossings, in/out/in, one update each."""
    m = CameraEvents(rules(zones=()))
    xs = [300, 310, 320, 500, 505, 300, 295, 600]
    got = kinds(m, [[person(x, 200)] for x in xs])
    assert got == ["new", "update", "update", "update"]
    assert m.line_counts == {("gate", "person"): (2, 1)}
    ended = m.end_all(1.0, EndReason.STOP).events[0]
    assert [c.direction for c in ended.crossings] == ["in", "out", "in"]


def test_crossing_before_confirmation_is_counted_at_new() -> None:
    """A fast object that crosses before it is confirmed is counted once, with its `new`."""
    m = CameraEvents(rules(zones=()))
    out = [m.observe(i * 0.1, [person(x, 200)]) for i, x in enumerate([100, 700, 710])]
    assert out[2].line_counts == {("gate", "person"): (1, 0)}
    assert [e.type for e in out[2].events] == [EventType.NEW]


def test_end_all_ends_every_open_event_once() -> None:
    """Clean stop / model swap: one `end` with the reason per open event, none after."""
    m = CameraEvents(rules())
    for i in range(3):
        m.observe(i * 0.1, [person(100, 200, 1), person(600, 200, 2)])
    ends = m.end_all(1.0, EndReason.MODEL_SWAP).events
    assert sorted(e.track_id for e in ends) == [1, 2]
    assert {e.end_reason for e in ends} == {EndReason.MODEL_SWAP}
    assert m.end_all(2.0, EndReason.STOP).events == []


def test_a_revived_track_id_does_not_open_a_second_event() -> None:
    """After its `end`, the same track id seen again (tracker revived it) opens nothing."""
    m = CameraEvents(rules())
    got = kinds(m, [[person(100, 200)]] * 3 + [[]] * 5 + [[person(100, 200)]] * 5)
    assert got == ["new", "end"]


def test_stationary_toggles_update() -> None:
    """Standing still for 5 s flips `stationary` once (one update), moving flips it back."""
    m = CameraEvents(rules(zones=(), lines=()))
    events = []
    for i in range(80):  # 8 s still
        events += m.observe(i * 0.1, [person(100, 200)]).events
    events += m.observe(8.1, [person(200, 200)]).events
    assert [(e.type.value, e.stationary) for e in events] == [
        ("new", False),
        ("update", True),
        ("update", False),
    ]


def test_a_camera_without_frames_ends_its_events_by_time() -> None:
    """No frame for max_disappeared_s (a stalled camera): expire ends the event, lost, with
    end_ts the last sighting; while frames still come, expire does nothing."""
    m = CameraEvents(rules(max_disappeared_s=3.0))
    for i in range(3):
        m.observe(i * 0.1, [person(100, 200)])
    m.observe(2.0, [])  # a recent frame without the person
    assert m.expire(4.0).events == []  # the camera delivered a frame 2 s ago
    (end,) = m.expire(5.1).events
    assert (end.type, end.end_reason, end.end_ts) == (EventType.END, EndReason.LOST, 0.2)
    assert m.expire(9.0).events == []
