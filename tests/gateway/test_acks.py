"""The gateway acks only contiguous runs of stored seqs (agent.gateway.acks); frozen clock."""

from __future__ import annotations

from agent.gateway.acks import AckDue, AckTracker

KEY = ("jet-0", "boot-1", "cam-a")


def acked(t: AckTracker, now: float = 0.0) -> list[int]:
    """The acks due now, marked as sent (what the archive does after publishing them)."""
    due = t.due(now)
    t.sent(due)
    return [d.seq_upto for d in due]


def feed(t: AckTracker, seqs: list[int], now: float = 0.0, evidence: bool = True) -> None:
    for seq in seqs:
        t.stored(KEY, seq, now, replay_evidence=evidence)


def test_contiguous_run_is_acked_once() -> None:
    t = AckTracker()
    feed(t, list(range(5)))
    assert t.due(0.0) == [AckDue("jet-0", "boot-1", "cam-a", 4)]
    assert t.due(0.5) == [AckDue("jet-0", "boot-1", "cam-a", 4)]  # offered until sent
    t.sent(t.due(0.5))
    assert t.due(1.0) == []  # nothing new: no repeated ack


def test_hole_holds_acks_however_long_until_it_fills() -> None:
    """0,1 then 4,5: ack 1 only, for as long as it takes; a replay bringing 2,3 acks 5."""
    t = AckTracker()
    feed(t, [0, 1, 4, 5])
    assert acked(t) == [1]
    assert acked(t, 10_000.0) == []  # no timer gives the hole up
    feed(t, [2, 3, 4, 5])  # the device's replay, in order
    assert acked(t) == [5]
    assert t.gaps_skipped == 0


def test_replay_past_the_hole_skips_it_and_counts() -> None:
    """The replay sends 4,5 again but not 2,3: the device no longer has them."""
    t = AckTracker()
    feed(t, [0, 1, 4, 5])
    assert acked(t) == [1]
    feed(t, [4, 5, 6])
    assert acked(t) == [6]
    assert t.gaps_skipped == 2


def test_repeats_prove_nothing_after_a_gateway_side_overflow() -> None:
    """With its own queue overflowing, the gateway may have dropped the hole's replay."""
    t = AckTracker()
    feed(t, [0, 3])
    feed(t, [3], evidence=False)
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
    feed(t, [1, 2])  # the ack was lost: the device sends them again
    assert acked(t) == [2]
    assert acked(t) == []  # once


def test_streams_are_independent() -> None:
    t = AckTracker()
    other = ("jet-0", "boot-2", "cam-a")
    t.stored(KEY, 0, 0.0)
    t.stored(other, 1, 0.0)
    assert t.due(0.0) == [AckDue(*KEY, 0)]  # `other` waits for its seq 0


def test_resume_after_restart_continues_from_the_last_ack() -> None:
    t = AckTracker()
    t.resume(KEY, 41)
    t.stored(KEY, 42, 0.0)
    assert acked(t) == [42]


def test_idle_acked_streams_are_forgotten() -> None:
    t = AckTracker(forget_after_s=100)
    t.stored(KEY, 0, 0.0)
    assert acked(t, 0.0) == [0]
    acked(t, 50.0)
    assert KEY in t.streams
    acked(t, 100.0)
    assert KEY not in t.streams
