"""The snapshot I/O: JPEG encoding, the durable file write and the retained publish, off the
frame path.

Writing a snapshot costs a JPEG encode (~3 ms for 768x576 here) and four fsyncs (two files,
their folder twice: 65 ms median on this VM's disk), too much for the inference thread. The
keeper decides (cheap, in frame order) and hands a `WriteJob` over; one writer thread does the
work in submission order, so an event's later frame always lands after its earlier one, and
publishes a snapshot only after its file is completely written. `threaded=False` runs each job
at once in the caller (tests, tools).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.contracts.topics import Topics
from agent.snapshots.choice import Box
from agent.snapshots.config import SnapshotsConfig
from agent.snapshots.encode import EncodeError, Image, fit, render
from agent.snapshots.store import SnapshotStore

log = structlog.get_logger(__name__)

PublishRetained = Callable[[str, bytes], None]
QUEUE_SIZE = 64
"""Jobs waiting at most; beyond that a job is dropped (counted, logged), never blocking."""


@dataclass(frozen=True)
class WriteJob:
    """Write an event's snapshot (when `image` is set) and/or publish its file."""

    camera: str
    event_id: str
    label: str
    image: Image | None
    box: Box
    caption: str
    publish: bool


class SnapshotWriter:
    """Runs write jobs in order into its store (under `state_dir`, within the config's quota);
    counters are read by any thread."""

    def __init__(
        self,
        cfg: SnapshotsConfig,
        state_dir: Path,
        topics: Topics,
        publish_retained: PublishRetained,
        threaded: bool = True,
    ) -> None:
        self.cfg = cfg
        self.store = SnapshotStore(state_dir, cfg.quota_bytes)
        self._topics = topics
        self._publish = publish_retained
        self._queue: queue.Queue[WriteJob | None] | None = (
            queue.Queue(QUEUE_SIZE) if threaded else None
        )
        self._thread: threading.Thread | None = None
        self.written = 0
        self.published = 0
        self.failures = 0
        self.dropped = 0

    def submit(self, job: WriteJob) -> None:
        """Queue `job` (or run it now when not threaded); never blocks."""
        if self._queue is None:
            self.run(job)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="snapshots", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            log.error(
                "snapshot queue full; snapshot dropped", camera=job.camera, event_id=job.event_id
            )

    def close(self, timeout: float) -> bool:
        """Finish the queued jobs (at most `timeout` s); True when all were done."""
        if self._queue is None or self._thread is None:
            return True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        assert self._queue is not None
        while (job := self._queue.get()) is not None:
            self.run(job)

    def run(self, job: WriteJob) -> None:
        """Do one job; failures are counted and logged, never raised."""
        full_path, _crop = self.store.paths(job.camera, job.event_id)
        try:
            if job.image is not None:
                c = self.cfg
                full, crop = render(job.image, job.box, job.caption, c.jpeg_quality, c.crop_padding)
                self.store.save(job.camera, job.event_id, full, crop)
                self.written += 1
            if job.publish and self.cfg.publish:
                payload = fit(full_path.read_bytes(), self.cfg.publish_max_bytes)
                self._publish(self._topics.snapshot(job.camera, job.label), payload)
                self.published += 1
        except (OSError, EncodeError) as err:  # a full disk, an evicted file: log, go on
            self.failures += 1
            log.error(
                "snapshot not written or published",
                camera=job.camera,
                event_id=job.event_id,
                error=str(err),
            )
