"""Publishes the discovery payload: retained at start (and by the session on every reconnect),
and again whenever Home Assistant announces `online` on its birth topic.

paho's network thread only sets an event in `_on_birth`; the publishing happens on this
module's own thread, so the MQTT session never calls out into application code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import structlog

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
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.announced = 0

    def start(self) -> None:
        """Publish the discovery (retained) and listen for Home Assistant's birth message."""
        self._announce()
        self._publisher.subscribe(self._birth_topic, self._on_birth)
        self._thread = threading.Thread(target=self._loop, name="ha-discovery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_birth(self, topic: str, payload: bytes) -> None:
        """paho's thread: note it, return at once."""
        if bytes(payload).strip().lower() == b"online":
            self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            log.info("home assistant is online; discovery published again", topic=self._topic)
            self._announce()

    def _announce(self) -> None:
        self._publisher.publish_retained(self._topic, self._payload, 1)
        self.announced += 1
