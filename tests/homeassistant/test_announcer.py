"""The announcer: retained at start, again only on `online`, never from paho's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.homeassistant.announcer import Announcer
from tests.helpers.polling import wait_for


class Recorder:
    """The publisher's surface the announcer uses, recording calls and their threads."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []
        self.subs: dict[str, Callable[[str, bytes], None]] = {}

    def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.published.append((topic, payload, threading.current_thread().name))

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None], qos: int = 1) -> None:
        self.subs[topic] = callback


def test_birth_online_republishes_and_offline_does_not() -> None:
    """`online` (any case, whitespace) brings the discovery again, on the announcer's thread;
    `offline` and other payloads do nothing."""
    pub = Recorder()
    a = Announcer(pub, "homeassistant/device/d/config", b"{}", "homeassistant/status")
    a.start()
    try:
        assert [p[0] for p in pub.published] == ["homeassistant/device/d/config"]
        birth = pub.subs["homeassistant/status"]
        birth("homeassistant/status", b"offline")
        birth("homeassistant/status", b"garbage")
        birth("homeassistant/status", b" Online\n")
        wait_for(lambda: len(pub.published) == 2, 5, "the second announcement")
        assert pub.published[1][2] == "ha-discovery"
    finally:
        a.stop()
    assert len(pub.published) == 2 and a.announced == 2
