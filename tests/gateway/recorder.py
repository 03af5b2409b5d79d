"""An MQTT subscriber that records every OTA command and state, in arrival order."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Recorder:
    """Records (time, device, 'command'|'state', payload dict) for edge/+/ota/#."""

    def __init__(self, port: int, prefix: str = "edge") -> None:
        self.events: list[tuple[float, str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"recorder-{time.time_ns()}"
        )
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/+/ota/#", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._msg
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.wait(10)

    def _msg(self, client, userdata, msg) -> None:  # noqa: ANN001
        parts = msg.topic.split("/")
        kind = "command" if parts[-1] == "command" else "state"
        try:
            data = json.loads(msg.payload)
        except ValueError:
            data = {"raw": msg.payload.decode("utf-8", "replace")}
        with self.lock:
            self.events.append((time.monotonic(), parts[1], kind, data))

    def commands(self, device: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e[3] for e in self.events if e[1] == device and e[2] == "command"]

    def index(self, device: str, kind: str, pred: Any = lambda d: True) -> int | None:
        """Position of the first matching event, or None."""
        with self.lock:
            for i, (_, dev, k, data) in enumerate(self.events):
                if dev == device and k == kind and pred(data):
                    return i
        return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
