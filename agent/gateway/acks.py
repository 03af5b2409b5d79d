"""Which detections the gateway may acknowledge: pure bookkeeping, no I/O.

An ack on `edge/<device>/ack` is cumulative per stream (device, boot_id, camera): the device
deletes every PUBACKed row with `seq <= seq_upto` (see `agent.publish.ack`). So the gateway may
only ack the end of a *contiguous* run of stored seqs: acking past a hole would delete, on the
device, a message the gateway never stored.

Holes are normal for a while: messages published while the gateway was disconnected, or
dropped by the broker for a slow subscriber. The device replays everything it still holds
unacked when no ack has advanced for `outbox.gateway_ack_timeout_s` (30 s by default), so a hole
fills within about that time if the device still has the message. A hole that outlives
`gap_timeout_s` (default 120 s, well past a replay) is a message the device no longer has
(counted there: outbox cap, refused submit) and is skipped, counted in `gaps_skipped`, so the
stream's acks go on. A stream's first expected seq is 0 (seqs start at 0 on every boot).
"""

from __future__ import annotations

from dataclasses import dataclass, field

StreamKey = tuple[str, str, str]
"""(device, boot_id, camera)."""


@dataclass
class _Stream:
    next_seq: int = 0  # lowest seq not yet stored; everything below is stored (or skipped)
    pending: set[int] = field(default_factory=set)  # stored seqs above a hole
    hole_since: float | None = None  # when the current hole at next_seq was first seen
    acked: int = -1  # the last seq_upto sent (-1: none)
    last_seen: float = 0.0


@dataclass(frozen=True)
class AckDue:
    """One cumulative ack to send: every seq of the stream up to `seq_upto` is stored."""

    device: str
    boot_id: str
    camera: str
    seq_upto: int


class AckTracker:
    """Contiguous stored seqs per stream and the acks they allow."""

    def __init__(self, gap_timeout_s: float = 120.0, forget_after_s: float = 3600.0) -> None:
        self.gap_timeout_s = gap_timeout_s
        self.forget_after_s = forget_after_s
        self.streams: dict[StreamKey, _Stream] = {}
        self.gaps_skipped = 0  # seqs given up on (never arrived within gap_timeout_s)

    def resume(self, key: StreamKey, acked: int) -> None:
        """After a restart: `acked` was the last seq_upto sent for `key` (from the archive)."""
        s = self.streams.setdefault(key, _Stream())
        if acked >= s.next_seq:
            s.next_seq, s.acked = acked + 1, acked
            s.pending = {q for q in s.pending if q > acked}

    def stored(self, key: StreamKey, seq: int, now: float) -> None:
        """The message `seq` of stream `key` is durably stored (duplicates are fine)."""
        s = self.streams.setdefault(key, _Stream())
        s.last_seen = now
        if seq < s.next_seq:
            return
        s.pending.add(seq)
        self._advance(s, now)

    def _advance(self, s: _Stream, now: float) -> None:
        while s.next_seq in s.pending:
            s.pending.discard(s.next_seq)
            s.next_seq += 1
        if not s.pending:
            s.hole_since = None
        elif s.hole_since is None:
            s.hole_since = now

    def due(self, now: float) -> list[AckDue]:
        """Acks that would advance some stream (skipping holes older than `gap_timeout_s`),
        until `sent` confirms them; forget streams idle for `forget_after_s`, all acked."""
        out: list[AckDue] = []
        for key, s in list(self.streams.items()):
            while s.hole_since is not None and now - s.hole_since >= self.gap_timeout_s:
                nxt = min(s.pending)
                self.gaps_skipped += nxt - s.next_seq
                s.next_seq = nxt
                s.hole_since = None
                self._advance(s, now)
            upto = s.next_seq - 1
            if upto > s.acked:
                out.append(AckDue(key[0], key[1], key[2], upto))
            elif not s.pending and now - s.last_seen >= self.forget_after_s:
                del self.streams[key]
        return out

    def sent(self, acks: list[AckDue]) -> None:
        """`acks` (from `due`) were recorded and published: do not offer them again."""
        for a in acks:
            s = self.streams.get((a.device, a.boot_id, a.camera))
            if s is not None:
                s.acked = max(s.acked, a.seq_upto)
