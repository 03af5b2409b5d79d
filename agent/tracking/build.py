"""Wire the tracking stage (tracker, events emitter, open-event file) from the agent config."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from agent.contracts.streams import Stream
from agent.contracts.topics import Topics
from agent.tracking.config import TrackingConfig
from agent.tracking.stage import TrackingStage
from agent.tracking.tracker import ByteTracker, Tracker, TrackerMissing

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.publish.publisher import Publisher

log = structlog.get_logger(__name__)


def make_tracker(cfg: TrackingConfig) -> Tracker:
    """The tracker `tracking.implementation` names; the `trackers` package is imported only
    for `trackers`. Raises TrackerMissing when the chosen one's packages are not installed."""
    if cfg.implementation == "trackers":
        return ByteTracker(cfg)
    try:
        from agent.tracking.bytetrack import BuiltinTracker
    except ImportError as err:  # scipy
        raise TrackerMissing(f"the builtin tracker needs scipy ({err})") from err
    return BuiltinTracker(cfg)


def build_tracking(
    cfg: AgentConfig, topics: Topics, boot_id: str, publisher: Publisher
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
    from agent.events.machine import EventRules

    ev, tr = cfg.events, cfg.tracking
    rules = {
        cam.id: EventRules(
            min_hits=ev.min_hits,
            max_disappeared_frames=ev.max_disappeared_frames,
            max_disappeared_s=ev.max_disappeared_s,
            zone_inertia=ev.zone_inertia_frames,
            stationary_s=tr.stationary_s,
            stationary_px=tr.stationary_px,
            zones=tuple(cam.zones),
            lines=tuple(cam.lines),
        )
        for cam in cfg.cameras
    }
    journal = OpenEvents(cfg.device.state_dir) if ev.persist_open else None
    from agent.snapshots.build import build_event_extras

    extras = build_event_extras(cfg, topics, boot_id, publisher.publish_retained)
    emitter = EventEmitter(
        EmitterContext(cfg.device.id, boot_id, topics, time.time()),
        rules,
        publisher.submitter(Stream.EVENTS),
        publisher.publish_retained,
        journal,
        extras,
    )
    emitter.close_previous()
    return TrackingStage(tracker, emitter)
