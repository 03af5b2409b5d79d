"""A bounded one-slot hand-off between two threads; both sides sleep on a Condition."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Slot(Generic[T]):
    """Holds at most one item from one producer thread for one consumer thread.

    `put` waits for the slot to be empty, `take` for it to be full. `close` (by the
    producer, when it will put nothing more) wakes both: `put` then refuses, `take` still
    hands out an item already in the slot, then returns None at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Place `item` once the slot is empty; False if closed or still full at `timeout`."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._full or self._closed, timeout):
                return False
            if self._closed:
                return False
            self._item, self._full = item, True
            self._cond.notify_all()
            return True

    def take(self, timeout: float | None = None) -> T | None:
        """The item, once there is one; None at `timeout`, or when closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Sleep until the consumer took the item (or the slot closed); True if empty."""
        with self._cond:
            self._cond.wait_for(lambda: not self._full or self._closed, timeout)
            return not self._full

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed and not self._full


class InFlight:
    """Counts batches between the prepare and post stages, so a swap can wait for none."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    def add(self) -> None:
        with self._cond:
            self._count += 1

    def done(self) -> None:
        with self._cond:
            self._count -= 1
            if self._count <= 0:
                self._cond.notify_all()

    def wait_none(self, timeout: float) -> bool:
        """Sleep until no batch is in flight; False at `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= 0, timeout)

    @property
    def count(self) -> int:
        with self._cond:
            return self._count
