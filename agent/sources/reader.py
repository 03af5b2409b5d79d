"""Camera readers: one daemon thread per camera that keeps only the newest frame.

Each `CameraReader` owns its `FrameSource` in its own thread: opening, reading and
reconnecting never block another camera, the inference loop, the publisher or the
watchdog. The thread puts each decoded frame into a one-slot mailbox; a frame replaced
before anyone took it is counted as `dropped`. The inference loop takes frames with
`latest(after_index)` (non-blocking) and sleeps on a shared `FrameSignal` instead of
spinning; `ReaderGroup` bundles both into the loop's `FrameFeed` (`next_frame(timeout)`).

A file with `pace: false` or `every_frame: true` is decoded on demand: after putting frame n
the thread sleeps until the loop took it, then decodes frame n+1 (one frame ready ahead, none
decoded for nothing, none dropped). That sleep is not a stall. A non-looping `every_frame`
file is a job: `finished` once its last frame was taken; `ReaderGroup.finished()` when every
camera is, which is the daemon's cue to stop in order and exit 0.

Stalls are detected by frame age whenever the reader is queried (`state`, `stats()`,
`latest()`, `poll()`) and, in a `ReaderGroup`, by a watcher thread every `POLL_INTERVAL_S`
even when nobody asks for frames: a streaming camera with no frame for `stall_timeout_s` becomes
STALLED. A read that is still blocked after twice that (or an open blocked past its open
timeout plus `stall_timeout_s`) is abandoned: the thread is left to finish on its own (it
is a daemon thread; it closes its capture and exits if the call ever returns) and a fresh
thread reconnects after backoff. At most `hang.MAX_ABANDONED` hung threads per camera are
tolerated; past that the camera stays STALLED and says why.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import structlog

from agent.sources.capture import (
    EndOfStream,
    FrameSource,
    Image,
    SourceError,
    SourceFactory,
    describe_source,
    open_source,
)
from agent.sources.config import CameraConfig
from agent.sources.demand import DemandGate
from agent.sources.hang import HangWatch, hang_limits
from agent.sources.mailbox import FrameMailbox
from agent.sources.state import CameraState, CameraStateMachine
from agent.types import Frame

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

POLL_INTERVAL_S = 0.25
"""Period of the ReaderGroup's stall checks (and longest sleep in next_frame between them)."""


class FrameSignal:
    """A version counter with a condition: readers bump it, the inference loop waits on it.

    Usage: `v = signal.version`, look at the readers, then `signal.wait(v, timeout)`; the
    wait returns at once if anything changed since `v`, so no frame is missed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    @property
    def version(self) -> int:
        """How many notifications happened so far."""
        with self._cond:
            return self._version

    def notify(self) -> None:
        """Record a change (new frame or state change) and wake every waiter."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the version differs from `seen` or `timeout` passes; return the version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen, timeout)
            return self._version


@dataclass(frozen=True)
class ReaderStats:
    """A snapshot of one camera reader, for the status and health messages.

    Attributes:
        camera: camera id.
        state: lifecycle state.
        fps: frames put in the mailbox per second over the last `mailbox.FPS_WINDOW_S` (0 when
            none).
        frames: frames decoded since start (the newest frame's index).
        delivered: frames taken by the inference loop.
        dropped: frames replaced in the mailbox before anyone took them (newest-frame policy).
        skipped: frames decoded but not offered because of the fps cap.
        reconnects: how many times the camera went to backoff.
        backoff_attempt: failures since the last stable streaming period.
        last_error: why the camera last failed (kept after recovery), or None.
        frame_age_s: age of the newest decoded frame, or None before the first one.
    """

    camera: str
    state: CameraState
    fps: float
    frames: int
    delivered: int
    dropped: int
    skipped: int
    reconnects: int
    backoff_attempt: int
    last_error: str | None
    frame_age_s: float | None


class CameraReader:
    """One camera: a daemon thread reading its source into a one-slot newest-frame mailbox."""

    def __init__(
        self,
        cfg: CameraConfig,
        signal: FrameSignal | None = None,
        source_factory: SourceFactory = open_source,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        jitter: float = 0.5,
    ) -> None:
        """Create a reader (not started).

        Args:
            cfg: the camera's config (source, fps cap, stall timeout, backoff bounds).
            signal: notified on every new frame and state change; share one across readers.
            source_factory: builds the FrameSource (tests inject fakes for absent hardware).
            clock: monotonic clock, for frame age, pacing and stall detection.
            wall_clock: UTC wall clock, for `Frame.captured_at`.
            rng: random source for backoff jitter.
            jitter: fraction of each backoff delay that is randomised.
        """
        self._cfg = cfg
        self.signal = signal if signal is not None else FrameSignal()
        self._factory = source_factory
        self._clock = clock
        self._wall = wall_clock
        self._log = log.bind(camera=cfg.id, source=describe_source(cfg.source))
        self._lock = threading.Lock()
        self._sm = CameraStateMachine(
            cfg.backoff_min_s, cfg.backoff_max_s, jitter=jitter, clock=clock, rng=rng
        )
        self._stop = threading.Event()
        self._gen = 0
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        self._mailbox = FrameMailbox(cfg.fps_cap)
        self._reconnects = 0
        self._hang = HangWatch(hang_limits(cfg))
        self._demand = DemandGate(cfg.source, self._lock)

    # -- public API ------------------------------------------------------------------------
    @property
    def camera_id(self) -> str:
        """The camera's id."""
        return self._cfg.id

    @property
    def started(self) -> bool:
        """Whether start() was called."""
        with self._lock:
            return self._thread is not None

    def start(self) -> None:
        """Start the reader thread. Raises RuntimeError if started twice."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"camera {self._cfg.id}: reader already started")
            self._thread = self._spawn(self._gen, None)
        self._log.info("camera reader started")

    @property
    def state(self) -> CameraState:
        """Current lifecycle state (runs the stall check first)."""
        self.poll()
        with self._lock:
            return self._sm.state

    def latest(self, after_index: int = -1) -> Frame | None:
        """The newest frame if its index is greater than `after_index`, else None. Never blocks."""
        self.poll()
        with self._lock:
            frame = self._mailbox.take(after_index)
            self._demand.notify()  # decode on demand: the next frame may be read now
            return frame

    @property
    def finished(self) -> bool:
        """A non-looping `every_frame` file played to its end, its last frame taken."""
        with self._lock:
            return self._demand.finished(self._mailbox.pending)

    def stats(self) -> ReaderStats:
        """A snapshot of counters, state and last error (runs the stall check first)."""
        self.poll()
        now = self._clock()
        with self._lock:
            box = self._mailbox
            return ReaderStats(
                camera=self._cfg.id,
                state=self._sm.state,
                fps=box.fps(now),
                frames=box.index + 1,
                delivered=box.delivered,
                dropped=box.dropped,
                skipped=box.skipped,
                reconnects=self._reconnects,
                backoff_attempt=self._sm.attempt,
                last_error=self._sm.last_error,
                frame_age_s=None if box.last_read is None else now - box.last_read,
            )

    def poll(self) -> None:
        """Detect a stall by frame age and replace a hung reader thread. Cheap; never blocks."""
        now = self._clock()
        changed = False
        with self._lock:
            age = self._demand.stall_age(now, self._mailbox.last_read)
            if self._sm.check_stall(age, self._cfg.stall_timeout_s):
                self._log.warning("camera stalled", frame_age_s=round(age or 0.0, 3))
                changed = True
            overdue = self._hang.overdue(now)
            if overdue is not None and not self._stop.is_set():
                changed = self._abandon(*overdue) or changed
        if changed:
            self.signal.notify()

    def request_stop(self) -> None:
        """Ask the thread to stop (returns at once); the state becomes STOPPED."""
        self._stop.set()
        with self._lock:
            if self._sm.state is not CameraState.STOPPED:
                self._sm.transition(CameraState.STOPPED)
            self._demand.notify()
            source = self._source
        if source is not None:
            source.interrupt()
        self.signal.notify()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the thread; False (with a warning) if it is still blocked."""
        with self._lock:
            thread = self._thread
            blocked_in = None if self._hang.blocked is None else self._hang.blocked[0]
        if thread is None:
            return True
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            self._log.warning(
                "camera reader thread did not stop in time; abandoned (daemon thread)",
                blocked_in=blocked_in,
                timeout_s=timeout,
            )
            return False
        return True

    def stop(self, timeout: float) -> bool:
        """Stop the reader within `timeout` seconds, even if a read hangs; True if it ended."""
        self.request_stop()
        return self.join(timeout)

    # -- the thread -----------------------------------------------------------------------
    def _spawn(self, gen: int, first_delay: float | None) -> threading.Thread:
        thread = threading.Thread(
            target=self._run,
            args=(gen, first_delay),
            name=f"camera-{self._cfg.id}-{gen}",
            daemon=True,
        )
        thread.start()
        return thread

    def _current(self, gen: int) -> bool:
        """Whether thread generation `gen` still owns the camera (call with the lock held)."""
        return gen == self._gen and not self._stop.is_set()

    def _run(self, gen: int, first_delay: float | None) -> None:
        delay = first_delay
        while True:
            if delay is not None:
                if self._stop.wait(delay) or not self._enter(gen, CameraState.CONNECTING):
                    return
            try:
                source = self._factory(self._cfg.source)
            except Exception as err:  # a factory bug or bad config must not kill the reader
                self._log.exception("cannot build the frame source")
                delay = self._fail(gen, f"cannot build source: {type(err).__name__}: {err}")
            else:
                with self._lock:
                    if gen == self._gen:
                        self._source = source
                try:
                    delay = self._stream(gen, source)
                finally:
                    with self._lock:
                        if self._source is source:
                            self._source = None
                    source.close()
            if delay is None:
                return

    def _enter(self, gen: int, new: CameraState, error: str | None = None) -> bool:
        with self._lock:
            if not self._current(gen):
                return False
            self._sm.transition(new, error)
        self.signal.notify()
        return True

    def _set_blocked(self, gen: int, op: str | None) -> None:
        with self._lock:
            if gen == self._gen:
                self._hang.mark(op, self._clock())

    def _stream(self, gen: int, source: FrameSource) -> float | None:
        """Open and read `source` until it fails; return the backoff delay, or None to exit."""
        mark = partial(self._set_blocked, gen)
        try:
            _blocking(self._log, mark, "open", source, source.open)
        except SourceError as err:
            return self._fail(gen, str(err))
        while not self._stop.is_set():
            try:
                image = _blocking(self._log, mark, "read", source, source.read)
            except EndOfStream as err:
                if self._enter(gen, CameraState.STOPPED, str(err)):
                    self._demand.ended = True  # read under the lock by `finished`; one store
                    self._log.info("camera source finished", reason=str(err))
                return None
            except SourceError as err:
                return self._fail(gen, str(err))
            if image is None:
                return self._fail(
                    gen,
                    f"no frame from {source.name} (stream ended, read timed out or device lost)",
                )
            if not self._deliver(gen, image):
                return None
        return None

    def _fail(self, gen: int, error: str) -> float | None:
        with self._lock:
            if not self._current(gen):
                return None
            delay = self._enter_backoff(error)
        self._log.warning("camera failed; backing off", error=error, retry_in_s=round(delay, 3))
        self.signal.notify()
        return delay

    def _enter_backoff(self, error: str) -> float:
        """Go to BACKOFF because of `error` and count a reconnect (lock held); return the delay."""
        delay = self._sm.enter_backoff(error)
        self._reconnects += 1
        self._mailbox.restart_pacing()
        return delay

    def _deliver(self, gen: int, image: Image) -> bool:
        """Put a decoded (h, w, 3) uint8 frame in the mailbox; False if this thread must exit."""
        now = self._clock()
        wall = self._wall()
        with self._lock:
            if not self._current(gen):
                return False
            index = self._mailbox.next_index(now)
            if self._sm.state is not CameraState.STREAMING:
                recovered = self._sm.state is CameraState.STALLED
                self._sm.transition(CameraState.STREAMING)
                self._log.info("camera streaming", recovered=recovered, shape=image.shape)
            if not self._mailbox.due(now):
                return True
            frame = Frame(
                camera=self._cfg.id,
                image=np.asarray(image),
                captured_at=wall,
                captured_mono=now,
                index=index,
            )
            self._mailbox.put(frame, now)
        self.signal.notify()
        if not self._demand.active:
            return True
        with self._lock:  # decode on demand: the next read waits until the loop took this frame
            self._demand.wait(self._mailbox, lambda: self._current(gen), self._clock)
            return self._current(gen)

    def _abandon(self, op: str, blocked_s: float) -> bool:
        """Leave a thread blocked in `op` behind and reconnect with a new one (lock held)."""
        if self._hang.saturated():
            if not self._hang.first_report():
                return False
            self._sm.last_error = (
                f"{op}() blocked for {blocked_s:.1f} s and {self._hang.still_hung()} earlier "
                "capture threads are still hung; not reconnecting until one returns"
            )
            self._log.error("camera capture hung; reconnects suspended", blocked_in=op)
            return True
        if not self._sm.can(CameraState.BACKOFF):
            return False
        self._hang.abandon(self._thread)
        self._gen += 1
        delay = self._enter_backoff(
            f"{op}() blocked for {blocked_s:.1f} s; capture abandoned, reconnecting"
        )
        self._log.warning(
            "camera capture hung; abandoning its thread", blocked_in=op, retry_in_s=round(delay, 3)
        )
        self._thread = self._spawn(self._gen, delay)
        return True


def _blocking(
    logger: Any,
    mark: Callable[[str | None], None],
    op: str,
    source: FrameSource,
    call: Callable[[], _T],
) -> _T:
    """Run the source's `op` call marked as blocked (`mark(op)`, then `mark(None)`, for hang
    detection); an unexpected backend exception becomes a SourceError, since it must not kill
    the reader."""
    mark(op)
    try:
        return call()
    except SourceError:
        raise
    except Exception as err:
        logger.exception("unexpected error in the frame source", call=op)
        raise SourceError(f"{source.name}: unexpected {type(err).__name__}: {err}") from err
    finally:
        mark(None)


class ReaderGroup:
    """All camera readers of the daemon, sharing one FrameSignal: the inference loop's FrameFeed."""

    def __init__(self, readers: Sequence[CameraReader], signal: FrameSignal) -> None:
        """Group `readers`, which must all have been built with `signal`."""
        if not readers:
            raise ValueError("a ReaderGroup needs at least one camera reader")
        ids = [r.camera_id for r in readers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        for r in readers:
            if r.signal is not signal:
                raise ValueError(f"camera {r.camera_id}: reader does not share the group's signal")
        self.readers = tuple(readers)
        self.signal = signal
        self._seen = {r.camera_id: -1 for r in readers}
        self._next = 0
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @classmethod
    def from_configs(
        cls,
        cameras: Sequence[CameraConfig],
        source_factory: SourceFactory = open_source,
    ) -> ReaderGroup:
        """One reader per camera config, sharing a new FrameSignal (not started)."""
        signal = FrameSignal()
        return cls([CameraReader(c, signal, source_factory) for c in cameras], signal)

    def start(self) -> None:
        """Start every reader thread, and a watcher that runs stall checks every POLL_INTERVAL_S.

        The watcher makes stall detection independent of the inference loop: a camera is
        marked stalled (and a hung capture replaced) even while nobody asks for frames.
        """
        for r in self.readers:
            if not r.started:  # readers may have been started one by one already
                r.start()
        if self._watcher is not None:
            raise RuntimeError("ReaderGroup already started")
        self._watcher = threading.Thread(target=self._watch, name="camera-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._watch_stop.wait(POLL_INTERVAL_S):
            for r in self.readers:
                r.poll()

    def stop(self, timeout: float) -> bool:
        """Stop all readers within `timeout` seconds in total; True if every thread ended."""
        deadline = time.monotonic() + timeout
        self._watch_stop.set()
        for r in self.readers:
            r.request_stop()
        if self._watcher is not None:
            self._watcher.join(max(0.0, deadline - time.monotonic()))
        ok = True
        for r in self.readers:
            ok = r.join(deadline - time.monotonic()) and ok
        return ok

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest unseen frame of the next camera that has one (round robin), or None.

        Sleeps on the shared signal, waking at least every POLL_INTERVAL_S to run stall checks.
        """
        deadline = time.monotonic() + timeout
        while True:
            version = self.signal.version
            readers = self.readers  # one snapshot per pass: `add`/`remove` replace the tuple
            n = len(readers)
            for k in range(n):
                reader = readers[(self._next + k) % n]
                frame = reader.latest(self._seen.get(reader.camera_id, -1))
                if frame is not None:
                    self._seen[reader.camera_id] = frame.index
                    self._next = (self._next + k + 1) % n
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.signal.wait(version, min(remaining, POLL_INTERVAL_S))

    def add(self, reader: CameraReader) -> None:
        """Add a camera at run time (config reload); started at once if the group runs."""
        if reader.signal is not self.signal:
            raise ValueError(f"camera {reader.camera_id}: reader does not share the group's signal")
        if any(r.camera_id == reader.camera_id for r in self.readers):
            raise ValueError(f"camera {reader.camera_id} is already in the group")
        self._seen[reader.camera_id] = -1  # a new reader counts its frames from 0 again
        if self._watcher is not None and not reader.started:
            reader.start()
        self.readers = (*self.readers, reader)
        self.signal.notify()

    def remove(self, camera_id: str, timeout: float) -> bool:
        """Stop and drop a camera at run time (config reload); True if its thread ended within
        `timeout` s. A frame of it already taken by the loop is still processed and published."""
        found = [r for r in self.readers if r.camera_id == camera_id]
        if not found:
            raise KeyError(camera_id)
        self.readers = tuple(r for r in self.readers if r.camera_id != camera_id)
        return found[0].stop(timeout)

    def finished(self) -> bool:
        """Whether every camera is a non-looping `every_frame` file whose last frame was taken."""
        return all(r.finished for r in self.readers)

    def states(self) -> dict[str, CameraState]:
        """Camera id -> state, for the status topic."""
        return {r.camera_id: r.state for r in self.readers}

    def stats(self) -> dict[str, ReaderStats]:
        """Camera id -> stats snapshot, for the health message."""
        return {r.camera_id: r.stats() for r in self.readers}
