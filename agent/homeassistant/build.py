"""Wire Home Assistant discovery from the agent config: the device's entities, the announcer
that publishes them, and `HomeAssistant`, which keeps both in step with the running cameras
(live reload) and the model's classes (OTA swap)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog

from agent import __version__
from agent.contracts.topics import Topics, discovery_topic
from agent.homeassistant.announcer import Announcer, RetainedPublisher
from agent.homeassistant.discovery import Area, CameraEntities, DeviceInfo, build, pick_labels

MAX_DISCOVERY_BYTES = 768 * 1024

log = structlog.get_logger(__name__)


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


def checked_discovery(cfg: AgentConfig, topics: Topics, classes: tuple[str, ...]) -> bytes:
    """`discovery_payload`, refused when over MAX_DISCOVERY_BYTES."""
    payload = discovery_payload(cfg, topics, classes)
    if len(payload) > MAX_DISCOVERY_BYTES:
        raise DiscoveryTooLarge(
            f"the Home Assistant discovery message would be {len(payload)} bytes, over "
            f"{MAX_DISCOVERY_BYTES} (the broker's packet limit is 1 MiB): set "
            "homeassistant.labels to the classes you need"
        )
    return payload


class HomeAssistant:
    """The device as Home Assistant sees it: a zero on every count topic the discovery
    declares (published once, before any real count) and the discovery itself, described
    again whenever the cameras or the model's classes change."""

    def __init__(self, topics: Topics, publisher: RetainedPublisher) -> None:
        self._topics, self._publisher = topics, publisher
        self._declared: set[str] = set()
        self.announcer: Announcer | None = None

    @classmethod
    def of(
        cls, cfg: AgentConfig, topics: Topics, publisher: RetainedPublisher
    ) -> HomeAssistant | None:
        """None with `homeassistant.enabled: false`."""
        return cls(topics, publisher) if cfg.homeassistant.enabled else None

    def describe(self, cfg: AgentConfig, classes: tuple[str, ...]) -> None:
        """The first call publishes the zeros and starts the announcer (DiscoveryTooLarge
        stops the start); later calls publish zeros for new topics only and hand a changed
        discovery to the announcer (one too large is logged and the previous one kept)."""
        try:
            payload = checked_discovery(cfg, self._topics, classes)
        except DiscoveryTooLarge:
            if self.announcer is None:
                raise
            log.exception("home assistant discovery not updated; the previous one stays")
            return
        for topic, zero in initial_states(cfg, self._topics, classes):
            if topic not in self._declared:
                self._publisher.publish_retained(topic, zero)
                self._declared.add(topic)
        if self.announcer is None:
            ha = cfg.homeassistant
            topic = discovery_topic(ha.discovery_prefix, cfg.device.id)
            self.announcer = Announcer(self._publisher, topic, payload, ha.birth_topic)
            self.announcer.start()
        else:
            self.announcer.update(payload)

    def stop(self, timeout: float) -> None:
        if self.announcer is not None:
            self.announcer.stop(timeout)


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
