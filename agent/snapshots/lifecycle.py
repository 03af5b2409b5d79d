"""Snapshots and camera-wide counts in the event lifecycle.

The events emitter hands every frame's outcome (after the camera's event machine decided it)
to `EventExtras.after_frame`, with the frame's image and observations:

- each `end` draft gets the event's final snapshot (`SnapshotKeeper.finish`: the pending best
  frame is written, then published retained);
- each observed box of an open event is offered to the keeper; a snapshot written now goes
  into the track's `new` or `update` draft of this frame when there is one, else it becomes an
  `update` of its own (`CameraEvents.snapshot_changed`);
- `new` and `end` move the camera-wide count of the label, published retained on
  `edge/<device>/cameras/<camera>/objects/<label>`.

Runs in the thread that processes the camera's results (frame order per camera).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import structlog

from agent.contracts.events import EventType, SnapshotRef, event_id
from agent.contracts.payloads import rfc3339_ms
from agent.contracts.topics import Topics
from agent.events.machine import EventDraft, FrameOutcome, Observation
from agent.homeassistant.counts import ObjectCounts
from agent.snapshots.keeper import SnapshotInfo, SnapshotKeeper

if TYPE_CHECKING:
    from agent.events.emitter import MachineStep

PublishRetained = Callable[[str, bytes], None]
log = structlog.get_logger(__name__)


def snapshot_ref(info: SnapshotInfo) -> SnapshotRef:
    """The event message's `snapshot` field for a written snapshot."""
    return SnapshotRef(
        ts=rfc3339_ms(info.ts),
        box=info.box,
        score=round(min(max(info.score, 0.0), 1.0), 4),
        path=info.path,
    )


class EventExtras:
    """Snapshot keeping and camera-wide counts for the events emitter."""

    def __init__(
        self,
        boot_id: str,
        topics: Topics,
        publish_retained: PublishRetained,
        keeper: SnapshotKeeper | None,
    ) -> None:
        self._boot_id = boot_id
        self._topics = topics
        self._retain = publish_retained
        self._keeper = keeper
        self._counts = ObjectCounts()

    def after_frame(self, step: MachineStep) -> FrameOutcome:
        """The step's outcome with snapshots filled in (and better-snapshot updates appended);
        snapshots are offered only when the step has a frame."""
        drafts = [self._settle(step.camera, d) for d in step.outcome.events]
        if step.frame is not None and self._keeper is not None:
            drafts += self._offer(self._keeper, step, step.frame, drafts)
        step.outcome.events = drafts
        return step.outcome

    def _settle(self, camera: str, d: EventDraft) -> EventDraft:
        if d.type == EventType.NEW:
            self._publish_count(camera, d.label, self._counts.new(camera, d.label, d.track_id))
        elif d.type == EventType.END:
            self._publish_count(camera, d.label, self._counts.end(camera, d.label, d.track_id))
            if self._keeper is not None:
                info = self._keeper.finish(event_id(self._boot_id, camera, d.track_id))
                if info is not None:
                    return replace(d, snapshot=snapshot_ref(info))
        return d

    def _offer(
        self,
        keeper: SnapshotKeeper,
        step: MachineStep,
        frame: tuple[npt.NDArray[np.uint8], list[Observation]],
        drafts: list[EventDraft],
    ) -> list[EventDraft]:
        image, observations = frame
        camera, ts, machine = step.camera, step.ts, step.machine
        # a `new` or `update` of the track in this frame carries the snapshot (no second message)
        this_frame = {d.track_id: i for i, d in enumerate(drafts) if d.type != EventType.END}
        updates = []
        for ob in observations:
            track = machine.tracks.get(ob.track_id)
            if track is None or not track.open:
                continue
            eid = event_id(self._boot_id, camera, ob.track_id)
            info = keeper.offer(camera, eid, track.label, image, ob.box, ob.score, ts)
            if info is None:
                continue
            update = machine.snapshot_changed(ob.track_id, snapshot_ref(info), ts)
            if update is None:
                continue
            if ob.track_id in this_frame:
                i = this_frame[ob.track_id]
                drafts[i] = replace(drafts[i], snapshot=update.snapshot)
            else:
                updates.append(update)
        return updates

    def close(self, timeout: float = 3.0) -> None:
        """Clean stop, after the last `end`: the snapshot writer finishes its queue (bounded
        by `timeout`, so the publisher still gets to send the retained snapshots)."""
        if self._keeper is not None and not self._keeper.close(timeout):
            log.warning("snapshot writer did not finish in time")

    def closed_at_restart(self, camera: str, label: str) -> None:
        """An event the previous run left open was closed: its camera-wide count restarts."""
        self._publish_count(camera, label, self._counts.count(camera, label))

    def _publish_count(self, camera: str, label: str, n: int) -> None:
        self._retain(self._topics.camera_count(camera, label), str(n).encode())
