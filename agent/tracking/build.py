"""Wire the tracking stage (tracker, events emitter, open-event file) from the agent config."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from agent.contracts.streams import Stream
from agent.contracts.topics import Topics
from agent.tracking.config import TrackingConfig
from agent.tracking.stage import TrackingStage
from agent.tracking.tracker import ByteTracker, Tracker, TrackerMissing

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.events.config import EventsConfig
    from agent.events.machine import EventRules
    from agent.live import LiveConfig
    from agent.publish.publisher import Publisher
    from agent.sources.config import CameraConfig

log = structlog.get_logger(__name__)


EVENTS_RULES = frozenset(
    {"min_hits", "max_disappeared_frames", "max_disappeared_s", "zone_inertia_frames"}
)
"""The `EventRules` fields taken as they are from `events:` (`tracking:` has a `min_hits` too:
the events' one is the rule)."""
TRACKING_RULES = frozenset({"stationary_s", "stationary_px"})
"""The `EventRules` fields taken as they are from `tracking:`."""


def event_rules(cam: CameraConfig, ev: EventsConfig, tr: TrackingConfig) -> EventRules:
    """The event machine's rules for one camera."""
    from agent.events.machine import EventRules

    return EventRules(
        **ev.model_dump(include=EVENTS_RULES),
        **tr.model_dump(include=TRACKING_RULES),
        zones=tuple(cam.zones),
        lines=tuple(cam.lines),
    )


class LiveRules:
    """Each camera's event rules, from the live config (`agent.live`): zones and lines changed
    by a reload apply from the camera's next frame, a camera added by a reload gets its rules,
    a removed one has none. Read on the inference thread; cached per camera config object."""

    def __init__(self, cfg: AgentConfig, live: Callable[[], LiveConfig]) -> None:
        self._events, self._tracking, self._live = cfg.events, cfg.tracking, live
        self._cache: dict[str, tuple[CameraConfig, EventRules]] = {}

    def get(self, camera: str) -> EventRules | None:
        cam = self._live().camera(camera)
        if cam is None:
            return None
        hit = self._cache.get(camera)
        if hit is None or hit[0] is not cam:
            hit = self._cache[camera] = (cam, event_rules(cam, self._events, self._tracking))
        return hit[1]


def make_tracker(cfg: TrackingConfig) -> Tracker:
    """The tracker `tracking.implementation` names; the `trackers` package is imported only
    for `trackers`. Raises TrackerMissing when the chosen one's packages are not installed."""
    if cfg.implementation == "trackers":
        return ByteTracker(cfg)
    try:
        from agent.tracking.bytetrack import BuiltinTracker
    except ImportError as err:  # scipy
        raise TrackerMissing(
            f"the builtin tracker needs scipy ({err}): install the `tracking` extra "
            "(pip install -e '.[tracking]'; docs/events.md)"
        ) from err
    return BuiltinTracker(cfg)


def build_tracking(
    cfg: AgentConfig,
    topics: Topics,
    boot_id: str,
    publisher: Publisher,
    live: Callable[[], LiveConfig],
) -> TrackingStage | None:
    """The pipeline's tracking stage, or None with `tracking.enabled: false`. With events on,
    events a previous run left open are closed (`end_reason: restart`) here, before the first
    frame, so they come first on each camera's `events` stream."""
    unused = [c.id for c in cfg.cameras if (c.zones or c.lines) and not cfg.events.enabled]
    if unused:
        log.warning(
            "zones/lines configured but events.enabled is false: not counted", cameras=unused
        )
    if not cfg.tracking.enabled:
        return None
    tracker = make_tracker(cfg.tracking)
    if not cfg.events.enabled:
        return TrackingStage(tracker)
    from agent.events.emitter import EmitterContext, EventEmitter
    from agent.events.journal import OpenEvents
    from agent.snapshots.build import build_event_extras

    journal = OpenEvents(cfg.device.state_dir) if cfg.events.persist_open else None
    extras = build_event_extras(cfg, topics, boot_id, publisher.publish_retained)
    ctx = EmitterContext(
        cfg.device.id,
        boot_id,
        topics,
        time.time(),
        publisher.submitter(Stream.EVENTS),
        publisher.publish_retained,
    )
    emitter = EventEmitter(ctx, LiveRules(cfg, live), journal, extras)
    emitter.close_previous()
    return TrackingStage(tracker, emitter)
