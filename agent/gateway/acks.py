"""Which messages the gateway may acknowledge: pure bookkeeping per stream, no I/O.

An ack (`edge.ack/2`) is cumulative per stream `(device, boot_id, camera, stream)`: the device
deletes every PUBACKed row of that stream with `seq <= seq_upto`. So the gateway only acks the
end of a *contiguous* run of stored seqs: acking past a hole would make the device delete a
message the gateway never stored. A stream's first seq is 0 (seqs restart at every boot).

Holes are normal for a while (messages published while the gateway was away, or dropped on the
way); the device replays what it still holds, in order. A hole is given up only when the device
itself says it no longer holds it: every message carries `oldest_unacked_seq`, the lowest seq of
its stream the device still has at the moment it (re)published the message. Every seq below that
mark the gateway lacks is gone for good on the device (it counted the loss: outbox cap, refused
submit), so it is skipped and counted in `gaps_skipped`. Nothing is skipped on a timer or on
indirect evidence (such as a replay that repeats later seqs but not the hole): a slow replay
delays acks, it never makes the gateway ack what it lacks.

Memory is bounded: each device has at most `max_streams_per_device` open streams (the least
recently seen one is forgotten first, `streams_evicted`), and a stream that holds a hole with no
progress for `hole_expiry_s` is forgotten (`holes_expired`); a forgotten stream only means its
next message waits for a replay before it is acked again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

StreamKey = tuple[str, str, str, str]
"""(device, boot_id, camera, stream)."""


@dataclass
class _Stream:
    next_seq: int = 0  # lowest seq not yet stored; everything below is stored (or skipped)
    pending: set[int] = field(default_factory=set)  # stored seqs above a hole
    acked: int = -1  # the last seq_upto sent (-1: none)
    reack: bool = False  # an acked seq came again: send the ack again
    last_seen: float = 0.0
    last_progress: float = 0.0


@dataclass(frozen=True)
class AckDue:
    """One cumulative ack to send: every seq of the stream up to `seq_upto` is stored."""

    device: str
    boot_id: str
    camera: str
    stream: str
    seq_upto: int

    @property
    def key(self) -> StreamKey:
        """The stream this ack is for."""
        return (self.device, self.boot_id, self.camera, self.stream)


@dataclass
class AckCounters:
    """What the tracker gave up on or forgot, since start."""

    gaps_skipped: int = 0  # seqs below a device's low-water mark that never arrived
    streams_evicted: int = 0  # streams forgotten because their device had too many open
    holes_expired: int = 0  # streams forgotten because a hole made no progress for too long


class AckTracker:
    """Contiguous stored seqs per stream and the acks they allow. `now` is a monotonic clock."""

    def __init__(
        self,
        *,
        max_streams_per_device: int = 64,
        hole_expiry_s: float = 3600.0,
        forget_after_s: float = 3600.0,
    ) -> None:
        if max_streams_per_device < 1:
            raise ValueError("max_streams_per_device must be >= 1")
        self.max_streams_per_device = max_streams_per_device
        self.hole_expiry_s = hole_expiry_s
        self.forget_after_s = forget_after_s
        self.streams: dict[StreamKey, _Stream] = {}
        self._per_device: dict[str, set[StreamKey]] = {}
        self.counters = AckCounters()

    @property
    def gaps_skipped(self) -> int:
        """Seqs given up on because the device declared it no longer holds them."""
        return self.counters.gaps_skipped

    def knows(self, key: StreamKey) -> bool:
        """True when `key` is tracked now (so a caller need not resume it from storage)."""
        return key in self.streams

    def resume(self, key: StreamKey, acked: int, now: float) -> None:
        """After a restart or a forget: `acked` was the last seq_upto sent for `key`."""
        s = self._stream(key, now)
        if acked >= s.next_seq:
            s.next_seq, s.acked = acked + 1, acked
            s.pending = {q for q in s.pending if q > acked}

    def stored(self, key: StreamKey, seq: int, low_water: int | None, now: float) -> None:
        """Message `seq` of `key` is durably stored (duplicates are fine).

        `low_water` is the message's `oldest_unacked_seq` (None when the device did not say):
        the device holds no seq of this stream below it any more.
        """
        s = self._stream(key, now)
        s.last_seen = now
        if seq < s.next_seq:
            if seq <= s.acked:
                s.reack = True
            return
        s.pending.add(seq)
        if low_water is not None and s.next_seq < min(low_water, seq + 1):
            mark = min(low_water, seq + 1)
            self.counters.gaps_skipped += sum(
                1 for q in range(s.next_seq, mark) if q not in s.pending
            )
            s.pending = {q for q in s.pending if q >= mark}
            s.next_seq = mark
        before = s.next_seq
        while s.next_seq in s.pending:
            s.pending.discard(s.next_seq)
            s.next_seq += 1
        if s.next_seq != before or not s.pending:
            s.last_progress = now

    def due(self, now: float) -> list[AckDue]:
        """Acks that would advance a stream (or repeat one the device missed), until `sent`
        confirms them; forgets idle streams and stuck holes."""
        out: list[AckDue] = []
        for key, s in list(self.streams.items()):
            upto = s.next_seq - 1
            if upto > s.acked or (s.reack and s.acked >= 0):
                out.append(AckDue(*key, max(upto, s.acked)))
            elif s.pending and now - s.last_progress >= self.hole_expiry_s:
                self.counters.holes_expired += 1
                self._forget(key)
            elif not s.pending and now - s.last_seen >= self.forget_after_s:
                self._forget(key)
        return out

    def sent(self, ack: AckDue) -> None:
        """`ack` (from `due`) was recorded and published: do not offer it again."""
        s = self.streams.get(ack.key)
        if s is not None:
            s.acked = max(s.acked, ack.seq_upto)
            s.reack = False

    def open_streams(self, device: str) -> int:
        """How many streams of `device` are tracked now."""
        return len(self._per_device.get(device, ()))

    def _stream(self, key: StreamKey, now: float) -> _Stream:
        s = self.streams.get(key)
        if s is not None:
            return s
        keys = self._per_device.setdefault(key[0], set())
        if len(keys) >= self.max_streams_per_device:
            oldest = min(keys, key=lambda k: self.streams[k].last_seen)
            self.counters.streams_evicted += 1
            self._forget(oldest)
        s = self.streams[key] = _Stream(last_seen=now, last_progress=now)
        keys.add(key)
        return s

    def _forget(self, key: StreamKey) -> None:
        del self.streams[key]
        keys = self._per_device[key[0]]
        keys.discard(key)
        if not keys:
            del self._per_device[key[0]]
