"""The gateway acks only contiguous runs of stored seqs per stream (agent.gateway.acks).

Pure bookkeeping with a frozen clock: no broker, no database.
"""

from __future__ import annotations

import random

import pytest

from agent.gateway.acks import AckDue, AckTracker

KEY = ("jet-0", "0123456789abcdef", "cam-a", "detections")


def acked(t: AckTracker, now: float = 0.0) -> list[int]:
    """The acks due now, marked as sent (what the archive does after publishing them)."""
    due = t.due(now)
    for d in due:
        t.sent(d)
    return [d.seq_upto for d in due]


def feed(t: AckTracker, seqs: list[int], low: int | None = 0, now: float = 0.0) -> None:
    """Store `seqs` of KEY, each declaring the device's low-water mark `low`."""
    for seq in seqs:
        t.stored(KEY, seq, low, now)


def test_contiguous_run_is_acked_once() -> None:
    """0..4 stored: one ack up to 4, offered until sent, then not again."""
    t = AckTracker()
    feed(t, list(range(5)))
    assert t.due(0.0) == [AckDue(*KEY, 4)]
    assert t.due(0.5) == [AckDue(*KEY, 4)]  # offered until sent
    t.sent(t.due(0.5)[0])
    assert t.due(1.0) == []


def test_hole_holds_acks_however_long_until_it_fills() -> None:
    """0,1 then 4,5: ack 1 only, for as long as it takes; a replay bringing 2,3 acks 5."""
    t = AckTracker(hole_expiry_s=1e9)
    feed(t, [0, 1, 4, 5])
    assert acked(t) == [1]
    assert acked(t, 10_000.0) == []  # no timer gives the hole up
    feed(t, [2, 3, 4, 5])  # the device's replay, in order
    assert acked(t) == [5]
    assert t.gaps_skipped == 0


def test_replay_repeating_later_seqs_never_skips_a_hole_the_device_still_holds() -> None:
    """The reviewer's scenario: 50 lost on the way, the replay brings 51 again, 50 is lost
    again; the device still holds 50 (its mark says 50), so nothing past 49 is acked."""
    t = AckTracker()
    feed(t, list(range(50)), low=0)
    feed(t, [51, 52], low=0)
    assert acked(t) == [49]
    feed(t, [51, 52], low=50)  # the replay: 50 dropped on the way again, 51 arrives
    assert acked(t) == []
    assert t.gaps_skipped == 0
    feed(t, [50], low=50)
    assert acked(t) == [52]


def test_hole_below_the_devices_low_water_mark_is_skipped_and_counted() -> None:
    """The device says it holds nothing below 4 (it dropped 2,3 at its cap): skip them."""
    t = AckTracker()
    feed(t, [0, 1, 4], low=0)
    assert acked(t) == [1]
    feed(t, [5], low=4)
    assert acked(t) == [5]
    assert t.gaps_skipped == 2


def test_a_mark_above_the_message_itself_never_skips_past_it() -> None:
    """A lying or buggy mark above the message's own seq cannot ack beyond what is stored."""
    t = AckTracker()
    feed(t, [0], low=0)
    t.stored(KEY, 1, 1000, 0.0)
    assert acked(t) == [1]


def test_without_a_mark_holes_wait() -> None:
    """A device that declares no mark (older agent) never has a hole skipped."""
    t = AckTracker()
    feed(t, [0, 3, 4], low=None)
    assert acked(t) == [0]
    assert t.gaps_skipped == 0


def test_stream_first_seen_past_zero_waits_for_the_start() -> None:
    """Seqs start at 0 on every boot: a stream first seen at 7 is a hole until replayed."""
    t = AckTracker()
    feed(t, [7])
    assert acked(t) == []
    feed(t, list(range(8)))
    assert acked(t) == [7]


def test_an_acked_seq_arriving_again_repeats_the_ack() -> None:
    """The device replays what it still holds when it missed an ack (reconnect, restart)."""
    t = AckTracker()
    feed(t, [0, 1, 2])
    assert acked(t) == [2]
    feed(t, [1, 2])
    assert acked(t) == [2]
    assert acked(t) == []  # once


@pytest.mark.parametrize(
    "other",
    [
        ("jet-0", "fedcba9876543210", "cam-a", "detections"),  # another boot
        ("jet-0", "0123456789abcdef", "cam-b", "detections"),  # another camera
        ("jet-0", "0123456789abcdef", "cam-a", "florence2"),  # another stream of the camera
        ("jet-1", "0123456789abcdef", "cam-a", "detections"),  # another device
    ],
)
def test_streams_are_independent(other: tuple[str, str, str, str]) -> None:
    """Seqs of one stream never advance another's ack."""
    t = AckTracker()
    t.stored(KEY, 0, 0, 0.0)
    t.stored(other, 1, 0, 0.0)
    assert t.due(0.0) == [AckDue(*KEY, 0)]  # `other` waits for its seq 0


def test_resume_after_restart_continues_from_the_last_ack() -> None:
    """A stream resumed at 41 acks 42 as soon as it is stored."""
    t = AckTracker()
    t.resume(KEY, 41, 0.0)
    t.stored(KEY, 42, 0, 0.0)
    assert acked(t) == [42]


def test_idle_acked_streams_are_forgotten() -> None:
    """A stream with nothing pending is dropped after forget_after_s of silence."""
    t = AckTracker(forget_after_s=100)
    t.stored(KEY, 0, 0, 0.0)
    assert acked(t, 0.0) == [0]
    acked(t, 50.0)
    assert t.knows(KEY)
    acked(t, 100.0)
    assert not t.knows(KEY)


def test_a_stuck_hole_expires_and_is_counted() -> None:
    """A hole with no progress for hole_expiry_s frees its stream; nothing is acked past it."""
    t = AckTracker(hole_expiry_s=60)
    feed(t, [0, 5], now=0.0)
    assert acked(t, 0.0) == [0]
    assert acked(t, 59.0) == []
    assert t.knows(KEY)
    assert acked(t, 60.0) == []
    assert not t.knows(KEY)
    assert t.counters.holes_expired == 1


def test_open_streams_per_device_are_capped() -> None:
    """10,000 random boot ids from one device keep at most the cap of streams in memory."""
    rng = random.Random(7)
    t = AckTracker(max_streams_per_device=16)
    good = ("good", "0123456789abcdef", "cam", "detections")
    for i in range(10_000):
        t.stored(("noisy", f"{rng.getrandbits(64):016x}", "cam", "detections"), 3, None, i)
        if i % 1000 == 0:
            t.stored(good, i // 1000, 0, i)
    assert t.open_streams("noisy") == 16
    assert t.counters.streams_evicted == 10_000 - 16
    assert len(t.streams) == 17
    assert acked(t, 10_000.0) == [9]  # the other device's stream is untouched
