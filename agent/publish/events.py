"""What paho's network thread tells the delivery pump: small events in a deque, and a wake-up.

The network thread only appends here; it never touches the pump's state or the store, and never
calls application code (paho runs its callbacks with its own mutex held).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection came up; `gen` numbers it (publishing on an older one is refused)."""

    gen: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection went down: everything in flight will be replayed."""


@dataclass(frozen=True, slots=True)
class Puback:
    """The broker acknowledged message `mid` (`failed`: it refused it, e.g. by ACL)."""

    mid: int
    failed: bool


@dataclass(frozen=True, slots=True)
class AckReceived:
    """Raw bytes received on the ack topic; the pump checks them."""

    payload: bytes


Event = Connected | Disconnected | Puback | AckReceived


class Inbox:
    """A lock-free hand-over from the network thread to the pump thread."""

    def __init__(self, wake_every: int = 1) -> None:
        self.events: deque[Event] = deque()
        self.wake = threading.Event()
        self.wake_every = wake_every
        """PUBACKs wake the pump only once this many events wait (it polls otherwise)."""

    def post(self, event: Event) -> None:
        """Queue an event and wake the pump now."""
        self.events.append(event)
        self.wake.set()

    def post_lazy(self, event: Event) -> None:
        """Queue an event; wake the pump only when enough are waiting (PUBACKs)."""
        self.events.append(event)
        if len(self.events) >= self.wake_every:
            self.wake.set()

    def on_ack_payload(self, _topic: str, payload: bytes) -> None:
        """Subscription callback for the ack topic: hand the bytes to the pump."""
        self.post(AckReceived(payload))
