"""The in-memory store used when `outbox.enabled` is false (implements `Store`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from agent.publish.store import OutboxMessage, OutboxRow, StreamKey, row_of


class MemoryStore:
    """At most `capacity` messages in memory; nothing survives a restart.

    It only holds the in-flight window; further messages wait in the hand-off queue, whose
    overflow is counted.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[int, OutboxRow] = OrderedDict()
        self._pubacked: set[int] = set()
        self._next_id = 1
        self._bytes = 0
        self.dropped = 0
        self._appended: list[OutboxRow] = []

    @property
    def count(self) -> int:
        """Messages held."""
        return len(self._rows)

    @property
    def bytes(self) -> int:
        """Accounted bytes held."""
        return self._bytes

    def room(self) -> int | None:
        """How many more messages fit."""
        return self.capacity - len(self._rows)

    def append(self, msgs: Sequence[OutboxMessage]) -> int:
        """Hold `msgs` (the caller never passes more than `room()`); never drops."""
        self._appended = []
        for m in msgs:
            row = row_of(self._next_id, m)
            self._rows[row.id] = row
            self._appended.append(row)
            self._next_id += 1
            self._bytes += m.size
        return 0

    def take_appended(self) -> list[OutboxRow]:
        """The rows the last `append` added, once."""
        rows, self._appended = self._appended, []
        return rows

    def next_batch(self, after_id: int, limit: int) -> list[OutboxRow]:
        """The next `limit` rows with id > after_id."""
        out = []
        for row_id, row in self._rows.items():
            if row_id > after_id:
                out.append(row)
                if len(out) >= limit:
                    break
        return out

    def delete(self, ids: Iterable[int]) -> int:
        """Forget delivered rows; returns how many existed."""
        n = 0
        for i in ids:
            row = self._rows.pop(i, None)
            if row is not None:
                n += 1
                self._pubacked.discard(i)
                self._bytes -= row.size
        return n

    def mark_pubacked(self, ids: Iterable[int]) -> None:
        """Flag rows the broker acknowledged."""
        self._pubacked.update(i for i in ids if i in self._rows)

    def oldest_pubacked(self) -> int | None:
        """The oldest PUBACKed row waiting for a gateway ack."""
        return min(self._pubacked, default=None)

    def delete_acked(self, key: StreamKey, seq_upto: int) -> int:
        """Delete PUBACKed rows of stream `key` with seq <= seq_upto."""
        ids = [
            r.id
            for r in self._rows.values()
            if r.id in self._pubacked and r.key == key and r.seq <= seq_upto
        ]
        return self.delete(ids)

    def lowest_seqs(self) -> dict[StreamKey, int]:
        """The lowest seq held per stream."""
        out: dict[StreamKey, int] = {}
        for r in self._rows.values():
            if r.seq < out.get(r.key, r.seq + 1):
                out[r.key] = r.seq
        return out

    def close(self) -> None:
        """Count what was never delivered as dropped and forget it."""
        self.dropped += len(self._rows)
        self._rows.clear()
