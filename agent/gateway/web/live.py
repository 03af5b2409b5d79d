"""The Live page's memory: per camera, the latest detection message and the last events, as
they arrive over MQTT (bytes kept, parsed only when a page asks).

Fed by the gateway's detection subscription, which exists while `archive.enabled` is on
(`agent.gateway.service`: the archive and this cache get every detection and event message),
and by the retained extras the same switch subscribes to (`on_extra`): each camera's latest
snapshot (`.../snapshot/<label>`, a JPEG with the event's box drawn by the device), zone counts
(`.../zones/<zone>/<label>`, integer text) and line counts (`.../lines/<line>/<label>`,
`{"in": n, "out": m, "since": ts}`). An empty retained payload clears its entry.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    snapshot_label: str | None = None
    snapshot_received: float | None = None
    zones: dict[str, str] = field(default_factory=dict)  # "zone yard person" -> "2"


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

    def on_extra(self, topic: str, payload: bytes) -> None:
        """A retained `snapshot/<label>`, `zones/<zone>/<label>` or `lines/<line>/<label>`."""
        parts = topic.split("/")
        if len(parts) < 6 or parts[0] != self.prefix or parts[2] != "cameras":
            return
        kind, snapshot = parts[4], parts[4] == "snapshot" and len(parts) == 6
        if not snapshot and not (kind in ("zones", "lines") and len(parts) == 7):
            return
        with self._lock:
            cam = self._cameras.setdefault((parts[1], parts[3]), CameraLive())
            if snapshot:
                _put_snapshot(cam, parts[5], payload, self.clock())
                return
            key = f"{kind[:-1]} {parts[5]} {parts[6]}"
            if payload:
                cam.zones[key] = count_text(kind, payload)
            else:
                cam.zones.pop(key, None)

    def cameras(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._cameras)

    def get(self, device: str, camera: str) -> CameraLive | None:
        with self._lock:
            cam = self._cameras.get((device, camera))
            if cam is None:
                return None
            return replace(cam, events=deque(cam.events), zones=dict(cam.zones))


def _put_snapshot(cam: CameraLive, label: str, jpeg: bytes, now: float) -> None:
    """Keep a JPEG (by its magic bytes, under the cap); an empty payload clears that label's."""
    if not jpeg:
        if cam.snapshot_label == label:
            cam.snapshot = cam.snapshot_label = cam.snapshot_received = None
        return
    if jpeg.startswith(b"\xff\xd8") and len(jpeg) <= SNAPSHOT_MAX_BYTES:
        cam.snapshot, cam.snapshot_label, cam.snapshot_received = jpeg, label, now


def count_text(kind: str, payload: bytes) -> str:
    """A zone count (integer text) or a line count (JSON) as one short line."""
    text = payload[:200].decode("utf-8", "replace").strip()
    if kind == "lines":
        data = parse(payload)
        if data is not None:
            text = f"in {data.get('in')}, out {data.get('out')} since {data.get('since')}"
    return text[:100]


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
        "snapshot_label": cam.snapshot_label,
        "snapshot_age_s": None if cam.snapshot_received is None else now - cam.snapshot_received,
        "zones": sorted(cam.zones.items()),
    }


def tee(*handlers: Callable[[str, bytes], None]) -> Callable[[str, bytes], None]:
    """One callback that calls each handler in turn."""

    def both(topic: str, payload: bytes) -> None:
        for h in handlers:
            h(topic, payload)

    return both
