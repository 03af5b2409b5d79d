"""Wire Home Assistant discovery from the agent config: the device's entities and the
announcer that publishes them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agent import __version__
from agent.contracts.topics import Topics, discovery_topic
from agent.homeassistant.announcer import Announcer, RetainedPublisher
from agent.homeassistant.discovery import Area, CameraEntities, DeviceInfo, build, pick_labels

MAX_DISCOVERY_BYTES = 768 * 1024


class DiscoveryTooLarge(ValueError):
    """Too many entities for one MQTT message."""


if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.sources.config import CameraConfig


def camera_entities(
    cam: CameraConfig, wanted: list[str] | None, classes: tuple[str, ...]
) -> CameraEntities:
    """What one camera exposes, with the labels chosen by `pick_labels`."""
    zones = tuple(Area(z.id, pick_labels(z.labels, wanted, classes)) for z in cam.zones)
    lines = tuple(Area(ln.id, pick_labels(ln.labels, wanted, classes)) for ln in cam.lines)
    return CameraEntities(cam.id, pick_labels(None, wanted, classes), zones, lines)


def discovery_payload(cfg: AgentConfig, topics: Topics, classes: tuple[str, ...]) -> bytes:
    """The retained discovery message of this device (compact JSON)."""
    ha = cfg.homeassistant
    info = DeviceInfo(
        device=cfg.device.id,
        name=ha.name or cfg.device.id,
        sw_version=__version__,
        cameras=tuple(camera_entities(c, ha.labels, classes) for c in cfg.cameras),
    )
    return json.dumps(build(info, topics), separators=(",", ":")).encode()


def build_announcer(
    cfg: AgentConfig, topics: Topics, publisher: RetainedPublisher, classes: tuple[str, ...]
) -> Announcer | None:
    """The announcer, or None with `homeassistant.enabled: false`."""
    ha = cfg.homeassistant
    if not ha.enabled:
        return None
    topic = discovery_topic(ha.discovery_prefix, cfg.device.id)
    payload = discovery_payload(cfg, topics, classes)
    if len(payload) > MAX_DISCOVERY_BYTES:
        raise DiscoveryTooLarge(
            f"the Home Assistant discovery message would be {len(payload)} bytes, over "
            f"{MAX_DISCOVERY_BYTES} (the broker's packet limit is 1 MiB): set "
            "homeassistant.labels to the classes you need"
        )
    return Announcer(publisher, topic, payload, ha.birth_topic)


def initial_states(
    cfg: AgentConfig, topics: Topics, classes: tuple[str, ...]
) -> list[tuple[str, bytes]]:
    """`0` on every camera-wide and zone count topic the discovery declares, so Home
    Assistant shows 0 / off (not unknown) before the first event. Published before the first
    frame; the events emitter publishes every change after that."""
    out = []
    wanted = cfg.homeassistant.labels
    for cam in cfg.cameras:
        ent = camera_entities(cam, wanted, classes)
        out += [(topics.camera_count(cam.id, label), b"0") for label in ent.labels]
        for zone in ent.zones:
            out += [(topics.zone_count(cam.id, zone.id, label), b"0") for label in zone.labels]
    return out
