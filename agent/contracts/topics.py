"""Every MQTT topic the product uses, built in one place.

Ids are validated here too, so no code path can publish to a topic with a wildcard or an
extra level in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.contracts.ids import check_id


def _topic(levels: str) -> property:
    """A read-only `Topics` topic: `levels` below the device's base."""

    def topic(topics: Topics) -> str:
        return f"{topics.base}/{levels}"

    return property(topic)


@dataclass(frozen=True)
class Topics:
    """Topic names for one device under one prefix (default `edge`)."""

    device: str
    prefix: str = "edge"

    def __post_init__(self) -> None:
        check_id(self.prefix, "topic prefix")
        check_id(self.device, "device id")

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    status = _topic("status")
    """Retained online/offline status (also the last will)."""
    health = _topic("health")
    """Periodic metrics, QoS 0, not retained."""
    ota_command = _topic("ota/command")
    """Signed OTA commands from the gateway."""
    ota_state = _topic("ota/state")
    """Retained OTA state machine position."""
    ack = _topic("ack")
    """Application acks from the gateway that let the outbox delete delivered messages."""
    config_command = _topic("config/command")
    """Signed camera-config pushes from the gateway (`edge.config-command/1`)."""
    config_state = _topic("config/state")
    """Retained answer to the latest config push (`edge.config-state/1`)."""

    def ota_state_of(self, kind: str) -> str:
        """Retained OTA state of the model slot `kind`: the detector's on `ota/state`, the
        Florence-2 fallback's on `ota/florence2/state` (each slot runs its own commands)."""
        if kind == "detector":
            return self.ota_state
        check_id(kind, "model kind")
        return f"{self.base}/ota/{kind}/state"

    def detections(self, camera: str) -> str:
        """Detection messages of one camera."""
        check_id(camera, "camera id")
        return f"{self.base}/cameras/{camera}/detections"

    def events(self, camera: str) -> str:
        """Tracked-object events of one camera."""
        check_id(camera, "camera id")
        return f"{self.base}/cameras/{camera}/events"

    def zone_count(self, camera: str, zone: str, label: str) -> str:
        """Retained number of `label` objects now in `zone` (plain integer text)."""
        check_id(camera, "camera id")
        check_id(zone, "zone id")
        return f"{self.base}/cameras/{camera}/zones/{zone}/{label_level(label)}"

    def line_count(self, camera: str, line: str, label: str) -> str:
        """Retained `{"in": n, "out": m, "since": ts}` crossings of `line` by `label`."""
        check_id(camera, "camera id")
        check_id(line, "line id")
        return f"{self.base}/cameras/{camera}/lines/{line}/{label_level(label)}"

    def camera_count(self, camera: str, label: str) -> str:
        """Retained number of confirmed `label` objects now tracked on `camera` (integer text)."""
        check_id(camera, "camera id")
        return f"{self.base}/cameras/{camera}/objects/{label_level(label)}"

    def snapshot(self, camera: str, label: str) -> str:
        """Retained JPEG of the latest snapshot of a `label` event on `camera`."""
        check_id(camera, "camera id")
        return f"{self.base}/cameras/{camera}/snapshot/{label_level(label)}"

    def stream(self, stream: str, camera: str) -> str:
        """The topic a message of `stream` (detections|florence2|events) goes to: YOLO and
        Florence-2 messages share the detections topic, events have their own."""
        return self.events(camera) if stream == "events" else self.detections(camera)


def detections_filter(prefix: str = "edge", device: str = "+", camera: str = "+") -> str:
    """Subscription filter for detections; `+` matches every device or camera."""
    return f"{prefix}/{device}/cameras/{camera}/detections"


def events_filter(prefix: str = "edge", device: str = "+", camera: str = "+") -> str:
    """Subscription filter for tracked-object events; `+` matches every device or camera."""
    return f"{prefix}/{device}/cameras/{camera}/events"


def live_extras_filters(prefix: str = "edge") -> list[str]:
    """Subscription filters for what the gateway's Live page shows beside detections: every
    camera's retained snapshots, zone counts and line counts."""
    base = f"{prefix}/+/cameras/+"
    return [f"{base}/snapshot/+", f"{base}/zones/+/+", f"{base}/lines/+/+"]


def label_level(label: str) -> str:
    """A class name as one topic level: lower case, every character outside [a-z0-9-]
    replaced by `-` (`traffic light` -> `traffic-light`; never a wildcard or a `/`)."""
    level = re.sub(r"[^a-z0-9-]", "-", label.lower())
    return level or "-"


def discovery_topic(prefix: str, device: str) -> str:
    """Home Assistant device discovery: `<prefix>/device/<device>/config` (retained)."""
    check_id(prefix, "discovery prefix")
    check_id(device, "device id")
    return f"{prefix}/device/{device}/config"


def status_filter(prefix: str = "edge") -> str:
    """Subscription filter for every device's retained status."""
    return f"{prefix}/+/status"


def ota_state_filter(prefix: str = "edge") -> str:
    """Subscription filter for every device's retained OTA state."""
    return f"{prefix}/+/ota/state"


def florence_ota_state_filter(prefix: str = "edge") -> str:
    """Subscription filter for every device's retained Florence-2 OTA state."""
    return f"{prefix}/+/ota/florence2/state"


def config_state_filter(prefix: str = "edge") -> str:
    """Subscription filter for every device's retained config-push answer."""
    return f"{prefix}/+/config/state"


def health_filter(prefix: str = "edge") -> str:
    """Subscription filter for every device's health messages."""
    return f"{prefix}/+/health"


def parse_device(topic: str, prefix: str = "edge") -> str | None:
    """Return the device id of a topic under `prefix`, or None if it does not fit."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != prefix:
        return None
    try:
        return check_id(parts[1], "device id")
    except ValueError:
        return None
