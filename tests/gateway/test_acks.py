"""The gateway acks only contiguous runs of stored seqs (agent.gateway.acks); frozen clock."""

from __future__ import annotations

from agent.gateway.acks import AckDue, AckTracker

KEY = ("jet-0", "boot-1", "cam-a")


def acked(t: AckTracker, now: float) -> list[int]:
    """The acks due now, marked as sent (what the archive does after publishing them)."""
    due = t.due(now)
    t.sent(due)
    return [d.seq_upto for d in due]


def test_contiguous_run_is_acked_once() -> None:
    t = AckTracker()
    for seq in range(5):
        t.stored(KEY, seq, 0.0)
    assert t.due(0.0) == [AckDue("jet-0", "boot-1", "cam-a", 4)]
    assert t.due(0.5) == [AckDue("jet-0", "boot-1", "cam-a", 4)]  # offered until sent
    t.sent(t.due(0.5))
    assert t.due(1.0) == []  # nothing new: no repeated ack
    t.stored(KEY, 3, 1.0)  # a redelivery changes nothing
    assert t.due(1.0) == []


def test_hole_holds_acks_until_it_fills() -> None:
    """0,1 then 4,5: ack 1 only; when 2,3 arrive (a replay) ack 5."""
    t = AckTracker(gap_timeout_s=120)
    for seq in (0, 1, 4, 5):
        t.stored(KEY, seq, 10.0)
    assert acked(t, 10.0) == [1]
    assert acked(t, 100.0) == []  # still waiting, before the gap timeout
    t.stored(KEY, 3, 101.0)
    t.stored(KEY, 2, 101.0)
    assert acked(t, 101.0) == [5]
    assert t.gaps_skipped == 0


def test_hole_older_than_gap_timeout_is_skipped_and_counted() -> None:
    t = AckTracker(gap_timeout_s=120)
    for seq in (0, 3, 4):
        t.stored(KEY, seq, 0.0)
    assert acked(t, 0.0) == [0]
    assert acked(t, 119.0) == []
    assert acked(t, 120.0) == [4]
    assert t.gaps_skipped == 2  # seqs 1 and 2 never came


def test_stream_first_seen_past_zero_waits_for_the_start() -> None:
    """Seqs start at 0 on every boot: a stream first seen at 7 is a hole until replayed."""
    t = AckTracker(gap_timeout_s=60)
    t.stored(KEY, 7, 0.0)
    assert acked(t, 0.0) == []
    for seq in range(7):
        t.stored(KEY, seq, 5.0)
    assert acked(t, 5.0) == [7]


def test_streams_are_independent() -> None:
    t = AckTracker()
    other = ("jet-0", "boot-2", "cam-a")
    t.stored(KEY, 0, 0.0)
    t.stored(other, 1, 0.0)
    assert t.due(0.0) == [AckDue(*KEY, 0)]  # `other` waits for its seq 0


def test_resume_after_restart_continues_from_the_last_ack() -> None:
    t = AckTracker()
    t.resume(KEY, 41)
    t.stored(KEY, 40, 0.0)  # replayed, already acked: ignored
    t.stored(KEY, 42, 0.0)
    assert acked(t, 0.0) == [42]


def test_idle_acked_streams_are_forgotten() -> None:
    t = AckTracker(forget_after_s=100)
    t.stored(KEY, 0, 0.0)
    assert acked(t, 0.0) == [0]
    acked(t, 50.0)
    assert KEY in t.streams
    acked(t, 100.0)
    assert KEY not in t.streams
