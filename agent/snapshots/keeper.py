"""Per event: which frame to keep, and when to write and publish it.

`offer` runs for every tracked box of an open event (in the thread that handles the camera's
results, frame order); it copies the frame only when it is the event's new best. The first
frame is written at once, a better one at most every `min_interval_s` per event; `finish` (at
the event's `end`) writes whatever better frame is still pending and publishes the event's
snapshot. The file name is known when the decision is made (`snapshots/<camera>/<event
id>.jpg`), so the event message names it; the writer (`writer.py`) encodes, writes and then
publishes off the frame path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.snapshots.choice import Box, Candidate, better, due, is_cut
from agent.snapshots.encode import Image
from agent.snapshots.writer import SnapshotWriter, WriteJob


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
    last_write: float | None = None


class SnapshotKeeper:
    """Best frames of the open events of every camera (decisions only; I/O in the writer)."""

    def __init__(self, writer: SnapshotWriter, clock: Callable[[], float] = time.monotonic) -> None:
        self._writer = writer
        self._cfg = writer.cfg  # one config for the decisions and the I/O
        self._clock = clock
        self._events: dict[str, _Event] = {}

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
        """One frame of an open event. Returns the new snapshot when one is written now (the
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
            return self._write(event_id, ev, publish=True)
        if ev.written is not None:
            self._writer.submit(
                WriteJob(ev.camera, event_id, ev.label, None, ev.written.box, "", publish=True)
            )
        return ev.written

    def close(self, timeout: float) -> bool:
        """Let the writer finish what was handed over (clean stop)."""
        return self._writer.close(timeout)

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
        self._writer.submit(
            WriteJob(ev.camera, event_id, ev.label, image, best.box, caption, publish)
        )
        full, _crop = self._writer.store.paths(ev.camera, event_id)
        ev.written = SnapshotInfo(best.ts, best.box, best.score, self._writer.store.relative(full))
        return ev.written
