"""A real paho subscriber that records every message it receives, for assertions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float


class Recorder:
    """Subscribes to `filters` on a broker and keeps every message, thread-safely."""

    def __init__(
        self, port: int, filters: list[str], host: str = "127.0.0.1", qos: int = 1
    ) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._filters = filters
        self._qos = qos
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("recorder did not subscribe")

    def _on_connect(self, client: mqtt.Client, *_a: object) -> None:
        client.subscribe([(f, self._qos) for f in self._filters])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            )
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        """Block until `pred(messages)` holds; raise TimeoutError with a summary otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise TimeoutError(
                        f"condition not met in {timeout}s; {len(self.messages)} msgs on {topics}"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int, topic: str, timeout: float = 5.0) -> bytes | None:
    """Read the retained message of `topic` with a fresh subscription (None if there is none)."""
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(bytes(msg.payload))
            done.set()

    c.on_message = on_message
    c.on_connect = lambda client, *_a: client.subscribe(topic, 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(timeout)
    c.loop_stop()
    c.disconnect()
    return got[-1] if got else None
