"""Which detections the gateway may acknowledge: pure bookkeeping, no I/O.

An ack on `edge/<device>/ack` is cumulative per stream (device, boot_id, camera): the device
deletes every PUBACKed row with `seq <= seq_upto` (see `agent.publish.ack`). So the gateway may
only ack the end of a *contiguous* run of stored seqs: acking past a hole would delete, on the
device, a message the gateway never stored. A stream's first expected seq is 0 (seqs start at
0 on every boot).

Holes are normal for a while: messages published while the gateway was disconnected, or
dropped by the broker for a slow subscriber. The device replays every row it still holds
unacked, in order, when its oldest such row has waited `outbox.gateway_ack_timeout_s`
(30 s by default) or after a reconnect. So:
- a hole fills when the replay brings the missing message;
- when a replay brings again a seq stored *above* the hole but not the hole itself, the device
  no longer has the missing message (a loss it counted: outbox cap, refused submit). The hole
  is then skipped, counted in `gaps_skipped`, and acks go on. Nothing is skipped on a timer,
  so a slow replay can delay acks but never makes the gateway ack what it lacks.

A seq at or below the last ack arriving again means the device did not get (or apply) that
ack, e.g. it reconnected or restarted in between: the ack is offered again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

StreamKey = tuple[str, str, str]
"""(device, boot_id, camera)."""


@dataclass
class _Stream:
    next_seq: int = 0  # lowest seq not yet stored; everything below is stored (or skipped)
    pending: set[int] = field(default_factory=set)  # stored seqs above a hole
    acked: int = -1  # the last seq_upto sent (-1: none)
    reack: bool = False  # an acked seq came again: send the ack again
    last_seen: float = 0.0


@dataclass(frozen=True)
class AckDue:
    """One cumulative ack to send: every seq of the stream up to `seq_upto` is stored."""

    device: str
    boot_id: str
    camera: str
    seq_upto: int


class AckTracker:
    """Contiguous stored seqs per stream and the acks they allow. `now` is a monotonic clock."""

    def __init__(self, forget_after_s: float = 3600.0) -> None:
        self.forget_after_s = forget_after_s
        self.streams: dict[StreamKey, _Stream] = {}
        self.gaps_skipped = 0  # seqs given up on (a replay went past them)

    def resume(self, key: StreamKey, acked: int) -> None:
        """After a restart: `acked` was the last seq_upto sent for `key` (from the archive)."""
        s = self.streams.setdefault(key, _Stream())
        if acked >= s.next_seq:
            s.next_seq, s.acked = acked + 1, acked
            s.pending = {q for q in s.pending if q > acked}

    def stored(self, key: StreamKey, seq: int, now: float, replay_evidence: bool = True) -> None:
        """The message `seq` of stream `key` is durably stored (duplicates are fine).

        `replay_evidence=False` when messages may have been lost on the gateway's side
        recently (its queue overflowed): a repeat then proves nothing about the hole.
        """
        s = self.streams.setdefault(key, _Stream())
        s.last_seen = now
        if seq < s.next_seq:
            if seq <= s.acked:
                s.reack = True
            return
        if seq in s.pending and replay_evidence:
            # Sent again, yet the hole below it was not: the device replayed past the hole
            # (it replays in order), so it no longer holds those seqs.
            first = min(s.pending)
            self.gaps_skipped += first - s.next_seq
            s.next_seq = first
        s.pending.add(seq)
        while s.next_seq in s.pending:
            s.pending.discard(s.next_seq)
            s.next_seq += 1

    def due(self, now: float) -> list[AckDue]:
        """Acks that would advance a stream (or repeat one the device missed), until `sent`
        confirms them; forget streams idle for `forget_after_s` with nothing pending."""
        out: list[AckDue] = []
        for key, s in list(self.streams.items()):
            upto = s.next_seq - 1
            if upto > s.acked or (s.reack and s.acked >= 0):
                out.append(AckDue(key[0], key[1], key[2], max(upto, s.acked)))
            elif not s.pending and now - s.last_seen >= self.forget_after_s:
                del self.streams[key]
        return out

    def sent(self, acks: list[AckDue]) -> None:
        """`acks` (from `due`) were recorded and published: do not offer them again."""
        for a in acks:
            s = self.streams.get((a.device, a.boot_id, a.camera))
            if s is not None:
                s.acked = max(s.acked, a.seq_upto)
                s.reack = False
