"""The low-water mark each published message declares: `oldest_unacked_seq` (pure).

A message carries the lowest seq of its stream that the device still holds in its outbox at
the moment the message is (re)published. The gateway may skip a hole below that mark (those
messages are gone) but never above it. So the declared value must never be *above* the truth
(that would let the gateway ack past a message the device still holds, and the device would
delete it undelivered); being below it for a moment only delays a skip.

`LowWater` keeps a cache that is always at or below the truth: a value read from the store is
exact when read, and afterwards the store only gains higher seqs (appends) or loses rows
(deliveries, caps), which can only raise the truth. A stream first seen after the last read
starts at its first appended seq. `refresh` re-reads the store to catch up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from agent.contracts.payloads import OLDEST_UNACKED_FIELD
from agent.publish.store import OutboxRow, StreamKey

_NAME = f'"{OLDEST_UNACKED_FIELD}"'.encode()
_KEY = b"," + _NAME + b":"


def stamp_oldest_unacked(payload: bytes, oldest: int) -> bytes:
    """`payload` with its `oldest_unacked_seq` set to `oldest`.

    Only payloads that declare the field (a detection message has it, null, as its last field)
    are changed; any other payload is returned as it is. The fast path replaces the value in
    place; a payload whose field is not last is re-serialised compactly.
    """
    at = payload.rfind(_KEY)
    if at >= 0 and payload.endswith(b"}"):
        value = payload[at + len(_KEY) : -1]
        if value == b"null" or value.isdigit():
            return b"%s%d}" % (payload[: at + len(_KEY)], oldest)
    if _NAME not in payload:
        return payload
    data = json.loads(payload)
    if not isinstance(data, dict) or OLDEST_UNACKED_FIELD not in data:
        return payload
    data[OLDEST_UNACKED_FIELD] = oldest
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class LowWater:
    """Per stream, a lower bound of the lowest seq held in the store (see the module doc)."""

    def __init__(self) -> None:
        self._low: dict[StreamKey, int] = {}
        self.stale = False
        """True when rows were deleted since the last refresh (the bound may be too low)."""

    def refresh(self, lowest: dict[StreamKey, int]) -> None:
        """Replace the cache with the store's exact lowest seqs (`Store.lowest_seqs()`)."""
        self._low = dict(lowest)
        self.stale = False

    def appended(self, rows: Iterable[OutboxRow]) -> None:
        """Note newly committed rows (a stream seen for the first time starts at its seq)."""
        low = self._low
        for row in rows:
            if row.key not in low:
                low[row.key] = row.seq

    def deleted(self) -> None:
        """Rows left the store: the cache may lag behind until the next refresh."""
        self.stale = True

    def mark_for(self, row: OutboxRow) -> int:
        """The `oldest_unacked_seq` to publish `row` with (never above its own seq)."""
        return min(self._low.get(row.key, row.seq), row.seq)

    def stamp(self, row: OutboxRow) -> bytes:
        """`row`'s payload stamped with its stream's mark (unchanged if it has no such field)."""
        if _NAME not in row.payload:
            return row.payload
        return stamp_oldest_unacked(row.payload, self.mark_for(row))
