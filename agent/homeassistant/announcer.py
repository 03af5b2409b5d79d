"""Publishes the discovery payload: retained at start (and by the session on every reconnect),
again whenever Home Assistant announces `online` on its birth topic, and whenever the payload
changes (`update`: cameras reloaded, a model with other classes swapped in).

paho's network thread only sets an event in `_on_birth`; the publishing happens on this
module's own thread, so the MQTT session never calls out into application code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import structlog

from agent.util.worker import Worker

log = structlog.get_logger(__name__)


class RetainedPublisher(Protocol):
    """The part of `agent.publish.publisher.Publisher` the announcer uses."""

    def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None: ...

    def subscribe(
        self, topic: str, callback: Callable[[str, bytes], None], qos: int = 1
    ) -> None: ...


class Announcer:
    """Owner of the device's discovery message."""

    def __init__(
        self, publisher: RetainedPublisher, topic: str, payload: bytes, birth_topic: str
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._payload = payload
        self._birth_topic = birth_topic
        self._worker = Worker("ha-discovery", self._loop)
        self._lock = threading.Lock()
        self._changed = False
        self.announced = 0

    def start(self) -> None:
        """Publish the discovery (retained) and listen for Home Assistant's birth message."""
        self._announce()
        self._publisher.subscribe(self._birth_topic, self._on_birth)
        self._worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._worker.stop(timeout)

    def update(self, payload: bytes) -> bool:
        """A new description of the device: published (on this module's thread) when it
        differs from the current one. Returns whether it differed."""
        with self._lock:
            if payload == self._payload:
                return False
            self._payload, self._changed = payload, True
        self._worker.wake()
        return True

    def _on_birth(self, topic: str, payload: bytes) -> None:
        """paho's thread: note it, return at once."""
        if bytes(payload).strip().lower() == b"online":
            self._worker.wake()

    def _loop(self) -> None:
        while not self._worker.rest():
            with self._lock:
                changed, self._changed = self._changed, False
            if changed:
                log.info("device description changed; discovery published", topic=self._topic)
            else:
                log.info("home assistant is online; discovery published again", topic=self._topic)
            self._announce()

    def _announce(self) -> None:
        with self._lock:
            payload = self._payload
        self._publisher.publish_retained(self._topic, payload, 1)
        self.announced += 1
