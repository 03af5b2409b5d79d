"""Per event: keep the best frame, write it, publish it retained.

`offer` runs for every tracked box of a frame (in the thread that handles the camera's
results, frame order); it copies the frame only when it is the event's new best. A better
frame is written and published at most every `min_interval_s` per event; `finish` (at the
event's `end`) writes whatever better frame is still pending and publishes the event's
snapshot. The retained message is read back from the written file, so it is only published
once the file is complete, and is re-encoded smaller when it exceeds `publish_max_bytes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.contracts.topics import Topics
from agent.snapshots.choice import Box, Candidate, better, due, is_cut
from agent.snapshots.config import SnapshotsConfig
from agent.snapshots.encode import EncodeError, Image, fit, render
from agent.snapshots.store import Saved, SnapshotStore

log = structlog.get_logger(__name__)

PublishRetained = Callable[[str, bytes], None]


@dataclass(frozen=True)
class SnapshotInfo:
    """The written snapshot of an event (what `edge.event/1`'s `snapshot` carries)."""

    ts: float
    box: Box
    score: float
    path: str


@dataclass
class _Event:
    camera: str
    label: str
    best: Candidate | None = None
    pending: Image | None = None  # the best frame, not yet written
    written: SnapshotInfo | None = None
    saved: Saved | None = None
    last_write: float | None = None


class SnapshotKeeper:
    """Best frames of the open events of every camera."""

    def __init__(
        self,
        cfg: SnapshotsConfig,
        store: SnapshotStore,
        topics: Topics,
        publish_retained: PublishRetained,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._topics = topics
        self._publish = publish_retained
        self._clock = clock
        self._events: dict[str, _Event] = {}
        self.published = 0
        self.failures = 0

    def offer(
        self,
        camera: str,
        event_id: str,
        label: str,
        image: Image,
        box: Box,
        score: float,
        ts: float,
    ) -> SnapshotInfo | None:
        """One frame of an open event. Returns the new snapshot when one was written now (the
        event gets an `update`), else None."""
        ev = self._events.get(event_id)
        if ev is None:
            ev = self._events[event_id] = _Event(camera, label)
        h, w = image.shape[:2]
        cand = Candidate(ts, box, score, is_cut(box, w, h, self._cfg.edge_margin_px))
        if better(cand, ev.best):
            ev.best = cand
            ev.pending = image.copy()
        if ev.pending is None or not due(ev.last_write, self._clock(), self._cfg.min_interval_s):
            return None
        return self._write(event_id, ev, publish=True)

    def finish(self, event_id: str) -> SnapshotInfo | None:
        """The event ended: write its pending best frame, publish its snapshot, forget it.
        Returns the event's final snapshot (None when it never had one)."""
        ev = self._events.pop(event_id, None)
        if ev is None:
            return None
        if ev.pending is not None:
            self._write(event_id, ev, publish=False)
        if ev.saved is not None:
            self._publish_file(ev, ev.saved)
        return ev.written

    @property
    def open_events(self) -> int:
        return len(self._events)

    def _write(self, event_id: str, ev: _Event, publish: bool) -> SnapshotInfo | None:
        best, image = ev.best, ev.pending
        if best is None or image is None:
            return ev.written
        ev.pending = None
        ev.last_write = self._clock()
        caption = f"{ev.label} {best.score:.2f}"
        try:
            full, crop = render(
                image, best.box, caption, self._cfg.jpeg_quality, self._cfg.crop_padding
            )
            saved = self._store.save(ev.camera, event_id, full, crop)
        except (OSError, EncodeError) as err:  # a full disk must not stop the frame path
            self.failures += 1
            log.error("snapshot not written", camera=ev.camera, event_id=event_id, error=str(err))
            return None
        ev.saved = saved
        ev.written = SnapshotInfo(best.ts, best.box, best.score, saved.path)
        if publish:
            self._publish_file(ev, saved)
        return ev.written

    def _publish_file(self, ev: _Event, saved: Saved) -> None:
        if not self._cfg.publish:
            return
        try:
            payload = fit(saved.full.read_bytes(), self._cfg.publish_max_bytes)
        except (OSError, EncodeError) as err:  # evicted already, or unreadable
            self.failures += 1
            log.error("snapshot not published", camera=ev.camera, path=saved.path, error=str(err))
            return
        self._publish(self._topics.snapshot(ev.camera, ev.label), payload)
        self.published += 1
