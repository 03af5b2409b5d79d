"""The Live page's memory: per camera, the latest detection message and the last events, as
they arrive over MQTT (bytes kept, parsed only when a page asks).

Fed by the gateway's detection subscription, which exists while `archive.enabled` is on
(`agent.gateway.service`: the archive and this cache get every message);
events arrive once the device publishes them and the gateway subscribes to them. Snapshots
(`.../snapshot/<label>`, retained JPEG) and zone counts have their place here too
(`put_snapshot`, `put_zone`), fed by nothing yet: the Live page says so.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EVENTS_KEPT = 10
SNAPSHOT_MAX_BYTES = 4 * 1024 * 1024


@dataclass
class CameraLive:
    """What the gateway last heard from one camera."""

    detection: bytes | None = None
    received: float | None = None
    events: deque[bytes] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    snapshot: bytes | None = None
    zones: dict[str, str] = field(default_factory=dict)


class LiveCache:
    """Thread-safe: the MQTT thread writes, the HTTP side reads."""

    def __init__(
        self, prefix: str = "edge", clock: Callable[[], float] = time.time, fed: bool = True
    ) -> None:
        self.prefix = prefix
        self.fed = fed  # False: the gateway does not subscribe to detections (archive off)
        self.clock = clock
        self._cameras: dict[tuple[str, str], CameraLive] = {}
        self._lock = threading.Lock()

    def on_message(self, topic: str, payload: bytes) -> None:
        """A message on `<prefix>/<device>/cameras/<camera>/(detections|events)`."""
        parts = topic.split("/")
        if len(parts) != 5 or parts[0] != self.prefix or parts[2] != "cameras":
            return
        with self._lock:
            cam = self._cameras.setdefault((parts[1], parts[3]), CameraLive())
            if parts[4] == "detections":
                cam.detection, cam.received = payload, self.clock()
            elif parts[4] == "events":
                cam.events.appendleft(payload)

    def put_snapshot(self, device: str, camera: str, jpeg: bytes) -> None:
        if len(jpeg) <= SNAPSHOT_MAX_BYTES:
            with self._lock:
                self._cameras.setdefault((device, camera), CameraLive()).snapshot = jpeg

    def put_zone(self, device: str, camera: str, key: str, value: str) -> None:
        with self._lock:
            self._cameras.setdefault((device, camera), CameraLive()).zones[key] = value[:100]

    def cameras(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._cameras)

    def get(self, device: str, camera: str) -> CameraLive | None:
        with self._lock:
            cam = self._cameras.get((device, camera))
            if cam is None:
                return None
            return CameraLive(
                cam.detection, cam.received, deque(cam.events), cam.snapshot, dict(cam.zones)
            )


def parse(payload: bytes | None) -> dict[str, Any] | None:
    """A stored message as JSON, or None when absent or unreadable."""
    if payload is None:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def camera_view(device: str, camera: str, cam: CameraLive, now: float) -> dict[str, Any]:
    """One camera of the Live page."""
    msg = parse(cam.detection) or {}
    events = [e for e in (parse(p) for p in cam.events) if e is not None]
    return {
        "device": device,
        "camera": camera,
        "age_s": None if cam.received is None else now - cam.received,
        "ts": msg.get("ts"),
        "model": msg.get("model"),
        "detections": msg.get("detections") or [],
        "events": events,
        "snapshot": cam.snapshot is not None,
        "zones": sorted(cam.zones.items()),
    }


def tee(*handlers: Callable[[str, bytes], None]) -> Callable[[str, bytes], None]:
    """One callback that calls each handler in turn."""

    def both(topic: str, payload: bytes) -> None:
        for h in handlers:
            h(topic, payload)

    return both
