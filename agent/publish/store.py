"""What the delivery pump stores messages in: the `Store` protocol and its row types.

Two stores implement it: `Outbox` (SQLite WAL on disk, `agent.publish.outbox`) and
`MemoryStore` (`agent.publish.memory`, when `outbox.enabled` is false). Rows are kept in commit
order (`id`, strictly increasing for the life of a store). Every row belongs to a stream
`(boot_id, camera, stream)` (`agent.contracts.streams`) whose `seq` grows by 1 per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.contracts.streams import Stream

ROW_OVERHEAD = 48
"""Bytes added to each row's accounted size for the row header, rowid and index entry."""

StreamKey = tuple[str, str, str]
"""(boot_id, camera, stream value): one stream of one boot."""


@dataclass(frozen=True)
class OutboxMessage:
    """A message to commit: its topic, dedup key (camera, boot_id, stream, seq), QoS and bytes."""

    topic: str
    camera: str
    boot_id: str
    seq: int
    qos: int
    payload: bytes
    stream: str = Stream.DETECTIONS.value

    @property
    def size(self) -> int:
        """Bytes this message is accounted for against `max_bytes`."""
        return (
            len(self.payload)
            + len(self.topic)
            + 2 * (len(self.boot_id) + len(self.camera))
            + ROW_OVERHEAD
        )


@dataclass(frozen=True)
class OutboxRow(OutboxMessage):
    """A committed message with its row id (commit order)."""

    id: int = field(kw_only=True)

    @property
    def key(self) -> StreamKey:
        """The stream this row belongs to."""
        return (self.boot_id, self.camera, self.stream)


def row_of(row_id: int, msg: OutboxMessage) -> OutboxRow:
    """The row `msg` becomes when committed as `row_id`."""
    return OutboxRow(**vars(msg), id=row_id)


class Store(Protocol):
    """Where messages wait until their delivery is confirmed; owned by one thread (the pump)."""

    dropped: int
    """Rows dropped (caps, full disk, or undelivered at stop for a memory store)."""

    @property
    def count(self) -> int:
        """Rows stored."""
        ...

    @property
    def bytes(self) -> int:
        """Accounted bytes stored."""
        ...

    def room(self) -> int | None:
        """How many more messages fit now (None: no limit, the caps drop the oldest)."""
        ...

    def append(self, msgs: Sequence[OutboxMessage]) -> int:
        """Commit `msgs` in order; returns how many rows were dropped to make room."""
        ...

    def take_appended(self) -> list[OutboxRow]:
        """The rows the last `append` committed, in order, once."""
        ...

    def next_batch(self, after_id: int, limit: int) -> list[OutboxRow]:
        """The next `limit` rows with id > after_id, in commit order."""
        ...

    def delete(self, ids: Iterable[int]) -> int:
        """Delete delivered rows by id; returns how many existed."""
        ...

    def mark_pubacked(self, ids: Iterable[int]) -> None:
        """Flag rows the broker acknowledged, so a gateway ack may delete them."""
        ...

    def oldest_pubacked(self) -> int | None:
        """Id of the oldest PUBACKed row still waiting for a gateway ack."""
        ...

    def delete_acked(self, key: StreamKey, seq_upto: int) -> int:
        """Delete PUBACKed rows of stream `key` with seq <= seq_upto (a gateway ack)."""
        ...

    def lowest_seqs(self) -> dict[StreamKey, int]:
        """The lowest seq stored per stream (reads every row of an on-disk store: call rarely)."""
        ...

    def close(self) -> None:
        """Release the store (an on-disk store keeps its rows)."""
        ...
