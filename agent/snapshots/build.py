"""Wire snapshots and camera-wide counts into the events emitter from the agent config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.contracts.topics import Topics
from agent.snapshots.keeper import SnapshotKeeper
from agent.snapshots.lifecycle import EventExtras
from agent.snapshots.writer import PublishRetained, SnapshotWriter

if TYPE_CHECKING:
    from agent.config import AgentConfig


def build_event_extras(
    cfg: AgentConfig, topics: Topics, boot_id: str, publish_retained: PublishRetained
) -> EventExtras:
    """Camera-wide counts always (with events), snapshots with `snapshots.enabled`."""
    keeper = None
    if cfg.snapshots.enabled:
        writer = SnapshotWriter(cfg.snapshots, cfg.device.state_dir, topics, publish_retained)
        keeper = SnapshotKeeper(writer)
    return EventExtras(boot_id, topics, publish_retained, keeper)
