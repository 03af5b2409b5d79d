"""DetectionArchive with a real SQLite file and its writer thread: storing, dedup, malformed
payloads, the acks it publishes (captured), restart, retention."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from agent.gateway.archive import DetectionArchive
from agent.gateway.config import ArchiveConfig
from agent.publish.ack import AckMessage
from tests.gateway.conftest import wait_for
from tests.helpers.messages import detection_payload

TOPIC = "edge/jet-0/cameras/cam-a/detections"


def message(seq: int, source: str = "yolo", device: str = "jet-0") -> bytes:
    return detection_payload(seq, device, source=source)  # type: ignore[arg-type]


class Acks:
    """The archive's publish callable: keeps what it would send to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, AckMessage]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.sent.append((topic, AckMessage.model_validate_json(payload)))

    def upto(self) -> list[int]:
        return [e.seq_upto for _, m in self.sent for e in m.acks]


def archive(path: Path, acks: Acks, clock: Callable[[], float] = time.time, **cfg: object):  # noqa: ANN201
    a = DetectionArchive(
        path, ArchiveConfig(enabled=True, flush_interval_s=0.05, **cfg), acks, clock=clock
    )
    a.start()
    return a


def rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT source, seq FROM detections ORDER BY source, seq").fetchall()


def test_stores_dedups_and_acks_the_contiguous_run(tmp_path: Path) -> None:
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks)
    try:
        for seq in (0, 1, 2, 1, 4):  # a redelivery of 1, and a hole at 3
            a.on_message(TOPIC, message(seq))
        a.on_message(TOPIC, message(1, "florence2"))
        wait_for(lambda: a.stats.stored == 5, 10)
        wait_for(lambda: acks.upto() == [2], 10)
        assert a.stats.duplicates == 1
        a.on_message(TOPIC, message(3))  # the replay fills the hole
        wait_for(lambda: acks.upto() == [2, 4], 10)
    finally:
        a.stop()
    assert acks.sent[0][0] == "edge/jet-0/ack"
    assert rows(tmp_path / "d.sqlite3") == [("florence2", 1)] + [("yolo", s) for s in range(5)]


def test_malformed_and_mismatched_messages_are_counted_not_stored(tmp_path: Path) -> None:
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks)
    try:
        a.on_message(TOPIC, b"{not json")
        a.on_message(TOPIC, json.dumps({"schema": "edge.detections/1"}).encode())
        a.on_message(TOPIC, message(0, device="jet-9"))  # payload device != topic device
        a.on_message(TOPIC, message(0))
        wait_for(lambda: a.stats.stored == 1, 10)
        assert a.stats.malformed == 3
    finally:
        a.stop()


def test_restart_resumes_acks_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    acks = Acks()
    a = archive(path, acks)
    for seq in range(3):
        a.on_message(TOPIC, message(seq))
    wait_for(lambda: acks.upto() == [2], 10)
    a.stop()
    acks2 = Acks()
    b = archive(path, acks2)
    try:
        b.on_message(TOPIC, message(1))  # replayed, already acked: at most the same ack again
        b.on_message(TOPIC, message(3))
        wait_for(lambda: acks2.upto()[-1:] == [3], 10)
        assert set(acks2.upto()) <= {2, 3}  # it went on from the stored ack, not from 0
    finally:
        b.stop()


def test_retention_deletes_old_rows(tmp_path: Path) -> None:
    now = [1_000_000.0]
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks, clock=lambda: now[0], retention_days=1)
    try:
        a.on_message(TOPIC, message(0))
        wait_for(lambda: a.stats.stored == 1, 10)
        now[0] += 2 * 86400  # two days later the hourly retention pass runs
        a.on_message(TOPIC, message(1))
        wait_for(lambda: a.stats.stored == 2, 10)
        wait_for(lambda: rows(tmp_path / "d.sqlite3") == [("yolo", 1)], 10)
    finally:
        a.stop()
