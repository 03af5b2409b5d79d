"""The in-flight window and the replay cursor of the delivery pump (pump thread only).

Rows are published in commit order (`id`): the cursor is the id of the last row handed to the
broker, the window maps MQTT message ids to row ids until their PUBACK. Rows just committed
are kept in memory (`fresh`) so the common case publishes them without reading them back.
"""

from __future__ import annotations

from collections import deque

from agent.publish.store import OutboxRow, Store

READ_BACK_ROWS = 256
"""Most rows read back from the store at once (a replay, or a backlog)."""


class Window:
    """At most `size` rows in flight, published in commit order from `cursor` on."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.inflight: dict[int, int] = {}  # MQTT mid -> row id
        self.cursor = 0
        self._fresh: deque[OutboxRow] = deque()
        self._last_appended = -1

    def room(self) -> int:
        """How many more rows may be in flight now."""
        return self.size - len(self.inflight)

    def rewind(self) -> None:
        """Publish again from the oldest stored row (what is in flight stays in flight)."""
        self.cursor = 0

    def reset(self) -> None:
        """The connection is gone: nothing is in flight any more; start over."""
        self.inflight.clear()
        self.cursor = 0

    def appended(self, rows: list[OutboxRow]) -> None:
        """Rows just committed, in order."""
        if rows:
            self._last_appended = rows[-1].id
        self._fresh.extend(rows)
        if len(self._fresh) > 2 * self.size:
            self._fresh.clear()  # a backlog: read it back from the store instead

    def next_rows(self, store: Store) -> list[OutboxRow]:
        """The next rows after the cursor, at most `room()` of them."""
        room, fresh = self.room(), self._fresh
        while fresh and fresh[0].id <= self.cursor:
            fresh.popleft()
        if fresh and fresh[0].id == self.cursor + 1:
            # Fast path: the rows just committed follow the cursor directly (ids are
            # consecutive within a process), so nothing older is unsent: no read-back.
            rows = []
            expect = self.cursor + 1
            while fresh and len(rows) < room and fresh[0].id == expect:
                rows.append(fresh.popleft())
                expect += 1
            return rows
        if not fresh and self.cursor == self._last_appended:
            return []  # everything committed in this process is handed over already
        fresh.clear()
        return store.next_batch(self.cursor, min(room, READ_BACK_ROWS))

    def sent(self, mid: int, row: OutboxRow) -> None:
        """`row` was handed to the broker as message `mid`."""
        self.inflight[mid] = row.id
        self.cursor = row.id

    def pubacked(self, mid: int) -> int | None:
        """The row id PUBACKed as `mid` (None: from a previous connection, replayed anyway)."""
        return self.inflight.pop(mid, None)
