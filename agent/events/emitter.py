"""Events out: the per-camera state machines' drafts become `edge.event/1` messages on the
camera's outbox stream `events` (own seq), and zone/line counts become retained messages.

Runs in the thread that processes a camera's results (frame order per camera); `close` runs
after that thread stopped. Nothing here blocks on the network: events go to the publisher's
non-blocking hand-off, retained counts to the session (published when connected, re-published
on reconnect).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from agent.contracts.events import (
    EndReason,
    EventMessage,
    EventType,
    LineCount,
    LineCrossing,
    SnapshotRef,
    event_id,
)
from agent.contracts.payloads import dump_payload, rfc3339_ms
from agent.contracts.topics import Topics
from agent.events.journal import OpenEvents
from agent.events.machine import CameraEvents, EventDraft, EventRules, FrameOutcome, Observation

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from agent.snapshots.lifecycle import EventExtras

log = structlog.get_logger(__name__)

SubmitFn = Callable[[str, int, bytes], bool]
PublishRetained = Callable[[str, bytes], None]


class RulesSource(Protocol):
    """Each camera's event rules now (a dict, or `agent.tracking.build.LiveRules`)."""

    def get(self, camera: str, /) -> EventRules | None: ...


@dataclass(frozen=True)
class EmitterContext:
    """What the emitter needs of the daemon: who it is, since when, and where messages go
    (the events stream's non-blocking hand-off and the retained publish, both never block)."""

    device: str
    boot_id: str
    topics: Topics
    started_at: float  # wall clock of this boot: the `since` of line counts
    submit: SubmitFn
    publish_retained: PublishRetained


@dataclass(frozen=True)
class MachineStep:
    """One outcome of a camera's event machine, on its way out (extras first, then sent).

    Attributes:
        camera: the camera whose machine decided it.
        ts: when (the frame's capture time, or the time of an expiry, stop or rules change).
        machine: that camera's machine.
        outcome: what it decided.
        frame: (image, observations) of the frame it decided on; None when there is no frame
            (expiry, stop, model swap, rules change).
    """

    camera: str
    ts: float
    machine: CameraEvents
    outcome: FrameOutcome
    frame: tuple[npt.NDArray[np.uint8], list[Observation]] | None = None


class EventEmitter:
    """Owns the cameras' event machines, the events streams' seqs and the open-event file."""

    def __init__(
        self,
        ctx: EmitterContext,
        rules: RulesSource,
        journal: OpenEvents | None = None,
        extras: EventExtras | None = None,
    ) -> None:
        self._ctx = ctx
        self._rules = rules
        self._machines: dict[str, CameraEvents] = {}
        self._seq: dict[str, int] = {}
        self._journal = journal
        self._extras = extras
        self.refused = 0
        self.sent = 0
        self.event_listeners: list[Callable[[EventMessage], None]] = []
        """Called (in the emitting thread) with each event after it was handed to the outbox,
        e.g. to publish the snapshot of an ended event; must not block."""

    def _machine(self, camera: str, ts: float) -> CameraEvents | None:
        """The camera's machine under its current rules; None for a camera without rules (no
        longer configured). Changed rules (a reload changed its zones or lines) apply from
        this frame (`CameraEvents.set_rules`: tracks leave zones that are gone)."""
        rules = self._rules.get(camera)
        m = self._machines.get(camera)
        if rules is None:
            return m
        if m is None:
            m = self._machines[camera] = CameraEvents(rules)
        elif m.rules != rules:
            log.info("camera's zones or lines changed: applied from this frame", camera=camera)
            self._emit_with_extras(MachineStep(camera, ts, m, m.set_rules(rules, ts)))
        return m

    # -- the frame path ------------------------------------------------------------------
    def on_frame(
        self,
        camera: str,
        ts: float,
        observations: list[Observation],
        image: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Feed one processed frame of `camera` (capture time `ts`, wall clock); `image` is
        the frame itself, for snapshots."""
        machine = self._machine(camera, ts)
        if machine is None:
            return
        frame = None if image is None else (image, observations)
        self._emit_with_extras(
            MachineStep(camera, ts, machine, machine.observe(ts, observations), frame)
        )

    def expire(self, now: float) -> None:
        """End the events of cameras that delivered no frame for `max_disappeared_s`."""
        for camera, m in list(self._machines.items()):
            self._emit_with_extras(MachineStep(camera, now, m, m.expire(now)))

    def end_camera(self, camera: str, ts: float, reason: EndReason) -> None:
        """End every open event of `camera` (model swap)."""
        if camera in self._machines:
            machine = self._machines[camera]
            self._emit_with_extras(MachineStep(camera, ts, machine, machine.end_all(ts, reason)))

    def _emit_with_extras(self, step: MachineStep) -> None:
        """Snapshots and camera-wide counts (the extras) see every outcome before it is sent."""
        outcome = step.outcome
        if self._extras is not None:
            outcome = self._extras.after_frame(step)
        self._emit(step.camera, outcome)

    def snapshot_kept(self, camera: str, track_id: int, snapshot: SnapshotRef, ts: float) -> bool:
        """A better snapshot of the open event of `track_id` was written: send its `update`
        (with `snapshot`); False when that track has no open event."""
        m = self._machines.get(camera)
        d = None if m is None else m.snapshot_changed(track_id, snapshot, ts)
        if d is None:
            return False
        self._send(self._message(camera, d))
        return True

    def close(self, ts: float) -> None:
        """Clean stop: one `end` (`end_reason: stop`) per open event, every camera."""
        for camera in list(self._machines):
            self.end_camera(camera, ts, EndReason.STOP)
        if self._extras is not None:
            self._extras.close()  # the ended events' snapshots: written and published

    def _emit(self, camera: str, outcome: FrameOutcome) -> None:
        for d in outcome.events:
            self._send(self._message(camera, d))
        ctx = self._ctx
        for (zone, label), n in outcome.zone_counts.items():
            ctx.publish_retained(ctx.topics.zone_count(camera, zone, label), str(n).encode())
        since = rfc3339_ms(ctx.started_at)
        for (line, label), (n_in, n_out) in outcome.line_counts.items():
            body = LineCount(in_=n_in, out=n_out, since=since)
            ctx.publish_retained(ctx.topics.line_count(camera, line, label), dump_payload(body))

    def _message(self, camera: str, d: EventDraft) -> EventMessage:
        return EventMessage(
            type=d.type,
            id=event_id(self._ctx.boot_id, camera, d.track_id),
            device=self._ctx.device,
            camera=camera,
            boot_id=self._ctx.boot_id,
            seq=0,  # set by _send
            ts=rfc3339_ms(d.ts),
            label=d.label,
            track_id=d.track_id,
            start_ts=rfc3339_ms(d.start_ts),
            end_ts=None if d.end_ts is None else rfc3339_ms(d.end_ts),
            score=round(d.score, 4),
            top_score=round(d.top_score, 4),
            box=d.box,
            zones_current=list(d.zones_current),
            zones_entered=list(d.zones_entered),
            lines_crossed=[
                LineCrossing(line=c.line, direction=c.direction, ts=rfc3339_ms(c.ts))
                for c in d.crossings
            ],
            stationary=d.stationary,
            dwell_s=d.dwell_s,
            snapshot=d.snapshot,
            end_reason=d.end_reason,
        )

    def _send(self, msg: EventMessage) -> None:
        """Journal first, then hand over, on the camera's events stream with its next seq."""
        seq = self._seq.get(msg.camera, 0)
        msg = msg.model_copy(update={"seq": seq})
        if self._journal is not None:
            try:
                if msg.type == EventType.END:
                    self._journal.remove(msg.id)
                else:
                    self._journal.put(msg)
            except OSError as err:  # a full disk must not stop events; the crash case degrades
                log.error("open-event file not written", error=str(err))
        if self._ctx.submit(msg.camera, seq, dump_payload(msg)):
            self.sent += 1
        else:
            self.refused += 1  # the seq gap shows consumers the counted loss
        self._seq[msg.camera] = seq + 1
        for listener in self.event_listeners:
            listener(msg)

    # -- after a crash -------------------------------------------------------------------
    def close_previous(self) -> int:
        """Send `end` (`end_reason: restart`) for every event a previous run left open, reset
        their zones' retained counts to 0, empty the file; return how many were closed."""
        if self._journal is None:
            return 0
        ctx, previous = self._ctx, self._journal.load_previous()
        for old in previous:
            end = old.model_copy(
                update={
                    "type": EventType.END,
                    "boot_id": ctx.boot_id,
                    "end_ts": old.ts,
                    "end_reason": EndReason.RESTART,
                    "zones_current": [],
                    "oldest_unacked_seq": None,
                }
            )
            seq = self._seq.get(end.camera, 0)
            if not ctx.submit(end.camera, seq, dump_payload(end.model_copy(update={"seq": seq}))):
                self.refused += 1
            self._seq[end.camera] = seq + 1
            for zone in old.zones_current:
                ctx.publish_retained(ctx.topics.zone_count(old.camera, zone, old.label), b"0")
            if self._extras is not None:
                self._extras.closed_at_restart(old.camera, old.label)
        self._journal.clear()
        if previous:
            log.info("events left open by the previous run closed", count=len(previous))
        return len(previous)
