"""Tracking and events through the real daemon, on the demo clip, against a real Mosquitto:
a named person keeps one id and gets one `new` ... `end`, zone counts go up and down, line
counts match the published trajectories, and a kill -9 mid-event is closed after restart."""

from __future__ import annotations

import json
import math
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.contracts.events import EndReason, EventMessage
from agent.contracts.payloads import DetectionMessage, StatusMessage
from agent.events.geometry import reference_point, side
from tests.helpers.broker import Mosquitto
from tests.helpers.clips import cut_demo_clip
from tests.helpers.daemon import DaemonProcess, demo_config
from tests.helpers.mqtt import Recorder
from tests.helpers.polling import wait_for

DEV = "dev-test"
CAM = "cam-a"
BASE = f"edge/{DEV}/cameras/{CAM}"

# The sub-clip: frames 40..131 of engines/demo/clip.mp4, every 2nd, played at 3 fps (15 s).
FIRST, LAST, STEP, FPS = 40, 132, 2, 3.0
# The named person: enters at the right edge at frame 44 of clip.mp4 (first box
# PERSON_FIRST_BOX, bottom centre (738, 384)) and walks up and to the left into the back of the
# scene, where their box bottom rises above y=190 at about frame 128 (and other people stand).
# Nobody comes near them on the way, so following the nearest box from frame to frame finds
# them without the tracker's help (`follow_person`).
PERSON_FIRST_BOX = (717.0, 268.0, 759.0, 384.0)
PERSON_UNTIL_Y = 190.0
ZONE = {"id": "lower", "polygon": [[0, 320], [768, 320], [768, 576], [0, 576]]}
LINE = {"id": "mid", "points": [[0, 300], [768, 300]]}  # left to right: `in` = moving up


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def sub_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sub-clip as an mp4 file."""
    return cut_demo_clip(tmp_path_factory.mktemp("clip") / "sub.mp4", FIRST, LAST, STEP, FPS)


def config(state: Path, port: int, clip: Path) -> dict[str, Any]:
    cfg = demo_config(
        state,
        port,
        tracking={"enabled": True, "min_hits": 2},
        events={"enabled": True, "max_disappeared_s": 4.0},  # > the wait before the kill
    )
    cfg["cameras"] = [
        {
            "id": CAM,
            "source": {"type": "file", "path": str(clip), "loop": False, "pace": True},
            "zones": [ZONE],
            "lines": [LINE],
        }
    ]
    return cfg


def unique(rec: Recorder, topic: str, model: Any) -> list[Any]:
    """Messages of `topic`, parsed, redeliveries dropped by (boot_id, seq), in arrival order."""
    seen, out = set(), []
    for m in rec.on(topic):
        msg = model.model_validate_json(m.payload)
        if (msg.boot_id, msg.seq) not in seen:
            seen.add((msg.boot_id, msg.seq))
            out.append(msg)
    return out


def follow_person(dets: list[DetectionMessage]) -> list[int | None]:
    """The track ids of the named person in each frame they are detected in, found without the
    tracker: from the first box overlapping PERSON_FIRST_BOX, the person box whose bottom centre
    is nearest to the last one (at most 30 px per frame since) until it rises above
    PERSON_UNTIL_Y."""
    start = next(
        i
        for i, m in enumerate(dets)
        if any(iou(d.box, PERSON_FIRST_BOX) >= 0.3 for d in m.detections)
    )
    here, ids, misses = reference_point(PERSON_FIRST_BOX), [], 0
    for m in dets[start:]:
        people = [d for d in m.detections if d.label == "person"]
        best = min(people, key=lambda d: math.dist(reference_point(d.box), here), default=None)
        if best is None or math.dist(reference_point(best.box), here) > 30 * (misses + 1):
            misses += 1
            if misses > 3:
                break
            continue
        misses, here = 0, reference_point(best.box)
        ids.append(best.track_id)
        if here[1] < PERSON_UNTIL_Y:
            break
    return ids


def expected_crossings(dets: list[DetectionMessage], tracks: set[int]) -> Counter[str]:
    """In/out crossings of LINE by `tracks`, from their published boxes (last off-line side)."""
    a, b = (tuple(p) for p in LINE["points"])
    last: dict[int, int] = {}
    out: Counter[str] = Counter()
    for m in dets:
        for d in m.detections:
            if d.track_id not in tracks:
                continue
            s = side(reference_point(d.box), a, b)  # type: ignore[arg-type]
            if s == 0:
                continue
            prev = last.get(d.track_id)
            if prev is not None and prev != s:
                out["in" if s > 0 else "out"] += 1
            last[d.track_id] = s
    return out


def test_person_zone_line_and_kill9(tmp_path: Path, mosquitto: Mosquitto, sub_clip: Path) -> None:
    """The sub-clip through the daemon; kill -9 once it ended; a restart closes the rest."""
    status = f"edge/{DEV}/status"
    rec = Recorder(mosquitto.port, [f"{BASE}/#", status])
    cfg = config(tmp_path / "state", mosquitto.port, sub_clip)
    first = DaemonProcess(tmp_path / "d1", cfg).start()
    try:

        def clip_over() -> bool:  # the camera reached the end of the file
            last = rec.on(status)[-1:]
            cams = StatusMessage.model_validate_json(last[0].payload).cameras if last else []
            return any(c.state == "stopped" for c in cams)

        wait_for(clip_over, 90, "the sub-clip played to its end", explain=first.log)
        time.sleep(0.5)  # the last frame's messages
    finally:
        first.kill()  # kill -9 mid-event: the events of people still in view stay open
    dets = unique(rec, f"{BASE}/detections", DetectionMessage)
    events1 = unique(rec, f"{BASE}/events", EventMessage)
    boot1 = dets[0].boot_id

    # the named person: one id on >= 90 % of the frames they are detected in
    ids = follow_person(dets)
    assert len(ids) >= 20, f"named person found in only {len(ids)} frames"
    pid, n = Counter(i for i in ids if i is not None).most_common(1)[0]
    assert n >= 0.9 * len(ids), f"id {pid} on {n}/{len(ids)} frames: {ids}"
    news = [e for e in events1 if e.type == "new"]
    assert [e.track_id for e in news].count(pid) == 1

    # zone count: rose and fell again during the run
    zone = [int(m.payload) for m in rec.on(f"{BASE}/zones/lower/person")]
    assert any(e.zones_entered == ["lower"] for e in events1 if e.track_id == pid)
    assert zone and max(zone) >= 1
    assert any(later < zone[i] for i, v in enumerate(zone) for later in zone[i + 1 :]), zone

    # line count: every crossing of a confirmed track counted once, matching the events
    confirmed = {e.track_id for e in news}
    want = expected_crossings(dets, confirmed)
    counts = rec.on(f"{BASE}/lines/mid/person")
    got = json.loads(counts[-1].payload) if counts else {"in": 0, "out": 0}
    assert (got["in"], got["out"]) == (want["in"], want["out"])
    latest = {e.id: e for e in events1}
    crossed = Counter(c.direction for e in latest.values() for c in e.lines_crossed)
    assert (crossed["in"], crossed["out"]) == (want["in"], want["out"])

    # restart: every event left open by the killed run ends with end_reason restart
    ended1 = {e.id for e in events1 if e.type == "end"}
    open1 = {e.id for e in news} - ended1
    assert open1, "nothing was open at the kill: the test proves nothing"
    assert f"{boot1}-{CAM}-{pid}" in open1 | ended1
    second = DaemonProcess(tmp_path / "d2", cfg).start()
    try:

        def restart_ends() -> list[EventMessage]:
            evs = unique(rec, f"{BASE}/events", EventMessage)
            return [e for e in evs if e.boot_id != boot1 and e.end_reason == EndReason.RESTART]

        closed = wait_for(
            lambda: len(restart_ends()) >= len(open1) and restart_ends(),
            60,
            "restart ends",
            explain=second.log,
        )
        assert sorted(e.id for e in closed) == sorted(open1)
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        second.kill()

    # over both runs: exactly one end per new
    final = unique(rec, f"{BASE}/events", EventMessage)
    per_id = Counter((e.id, e.type.value) for e in final)
    for e in final:
        if e.type == "new":
            assert per_id[(e.id, "end")] == 1, f"{e.id} has {per_id[(e.id, 'end')]} ends"
    boot2 = {e.boot_id for e in final} - {boot1}
    assert len(boot2) == 1
    seqs = [e.seq for e in final if e.boot_id in boot2]
    assert seqs == list(range(len(seqs)))  # one stream, no gap
