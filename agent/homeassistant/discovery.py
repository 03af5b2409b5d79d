"""The Home Assistant device-discovery payload (pure: ids and topics in, a dict out).

One retained message on `<prefix>/device/<device>/config` describes the device (`dev`), this
software (`o`) and every entity (`cmps`, keyed by a component id that is also the entity's
`unique_id`, so entities keep their ids and history across restarts):

- per camera and label: `binary_sensor` occupancy (on while the count > 0), a count `sensor`,
  and the latest snapshot as an `image` (raw JPEG on `image_topic`);
- per zone and label: the same occupancy `binary_sensor` and count `sensor`;
- per line and label: `in` and `out` counter `sensor`s (`total_increasing`: they restart
  at 0 with the daemon);
- the device's inference fps from its `health` message.

Availability follows the retained `edge/<device>/status` (`state` online/offline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.contracts.topics import Topics, label_level

OCCUPIED = "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}"


@dataclass(frozen=True)
class Area:
    """A zone or line of a camera and the labels it gets entities for."""

    id: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class CameraEntities:
    """What one camera exposes: its labels (camera-wide), zones and lines."""

    camera: str
    labels: tuple[str, ...]
    zones: tuple[Area, ...] = ()
    lines: tuple[Area, ...] = ()


@dataclass(frozen=True)
class DeviceInfo:
    device: str
    name: str
    sw_version: str
    model: str = "edge-agent"
    cameras: tuple[CameraEntities, ...] = field(default_factory=tuple)


def _uid(device: str, *parts: str) -> str:
    """`edge_<device>_<part>_...`: ids and label levels never contain `_`, so distinct entities
    never share an id."""
    return "_".join(["edge", device, *(label_level(p) for p in parts)])


def _occupancy(uid: str, name: str, topic: str) -> dict[str, Any]:
    return {
        "p": "binary_sensor",
        "name": f"{name} occupancy",
        "unique_id": f"{uid}_occupancy",
        "device_class": "occupancy",
        "state_topic": topic,
        "value_template": OCCUPIED,
    }


def _count(uid: str, name: str, topic: str) -> dict[str, Any]:
    return {
        "p": "sensor",
        "name": f"{name} count",
        "unique_id": f"{uid}_count",
        "state_topic": topic,
        "state_class": "measurement",
        "unit_of_measurement": "objects",
        "icon": "mdi:counter",
    }


def _line(uid: str, name: str, topic: str, direction: str) -> dict[str, Any]:
    return {
        "p": "sensor",
        "name": f"{name} {direction}",
        "unique_id": f"{uid}_{direction}",
        "state_topic": topic,
        "value_template": f"{{{{ value_json['{direction}'] }}}}",
        "state_class": "total_increasing",
        "unit_of_measurement": "crossings",
        "icon": "mdi:transit-transfer",
    }


def _camera_components(d: str, cam: CameraEntities, topics: Topics) -> list[dict[str, Any]]:
    c = cam.camera
    out: list[dict[str, Any]] = []
    for label in cam.labels:
        uid, name = _uid(d, c, label), f"{c} {label}"
        out.append(_occupancy(uid, name, topics.camera_count(c, label)))
        out.append(_count(uid, name, topics.camera_count(c, label)))
        out.append(
            {
                "p": "image",
                "name": f"{name} snapshot",
                "unique_id": f"{uid}_snapshot",
                "image_topic": topics.snapshot(c, label),
                "content_type": "image/jpeg",
            }
        )
    for zone in cam.zones:
        for label in zone.labels:
            uid, name = _uid(d, c, "zone", zone.id, label), f"{c} {zone.id} {label}"
            topic = topics.zone_count(c, zone.id, label)
            out += [_occupancy(uid, name, topic), _count(uid, name, topic)]
    for line in cam.lines:
        for label in line.labels:
            uid, name = _uid(d, c, "line", line.id, label), f"{c} {line.id} {label}"
            topic = topics.line_count(c, line.id, label)
            out += [_line(uid, name, topic, "in"), _line(uid, name, topic, "out")]
    return out


def build(info: DeviceInfo, topics: Topics) -> dict[str, Any]:
    """The discovery payload of the device (a JSON-ready dict)."""
    d = info.device
    comps: list[dict[str, Any]] = []
    for cam in info.cameras:
        comps += _camera_components(d, cam, topics)
    comps.append(
        {
            "p": "sensor",
            "name": "fps",
            "unique_id": _uid(d, "fps"),
            "state_topic": topics.health,
            "value_template": "{{ value_json.fps }}",
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "icon": "mdi:speedometer",
        }
    )
    return {
        "dev": {
            "ids": [f"edge-{d}"],
            "name": info.name,
            "mf": "edge-agent",
            "mdl": info.model,
            "sw": info.sw_version,
        },
        "o": {"name": "edge-agent", "sw": info.sw_version},
        "availability": [{"topic": topics.status, "value_template": "{{ value_json.state }}"}],
        "qos": 1,
        "cmps": {c["unique_id"]: c for c in comps},
    }


def pick_labels(
    own: list[str] | None, wanted: list[str] | None, classes: tuple[str, ...]
) -> tuple[str, ...]:
    """Labels a camera, zone or line gets entities for: its own filter (`own`, a zone's or
    line's `labels`) narrowed to `homeassistant.labels` when both are set; else whichever is
    set; else every class of the model. Order kept, no repeats."""
    if own is not None and wanted is not None:
        chosen = [x for x in own if x in wanted]
    else:
        chosen = list(own if own is not None else wanted if wanted is not None else classes)
    return tuple(dict.fromkeys(chosen))
