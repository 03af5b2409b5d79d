"""DetectionArchive with a real SQLite file and its writer thread: storing per stream, dedup,
malformed and poisoned payloads, the signed acks it publishes (captured), restart, retention,
size cap, the v1 file migration."""

from __future__ import annotations

import functools
import json
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.ack import AckMessage
from agent.gateway.archive import DetectionArchive
from agent.gateway.config import ArchiveConfig
from agent.trust.signing import key_id, public_key_b64, sign, verify
from tests.gateway.conftest import wait_for
from tests.helpers.messages import detection_payload

TOPIC = "edge/jet-0/cameras/cam-a/detections"
BOOT = "0123456789abcdef"
KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(KEY): public_key_b64(KEY)}


def message(seq: int, source: str = "yolo", device: str = "jet-0", **kw: object) -> bytes:
    return detection_payload(seq, device, source=source, boot_id=BOOT, **kw)  # type: ignore[arg-type]


class Acks:
    """The archive's publish callable: keeps what it would send to the broker, verified."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, AckMessage]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        msg = AckMessage.from_wire(json.loads(payload))
        verify(msg, TRUSTED)  # every ack the archive sends is signed by the gateway key
        self.sent.append((topic, msg))

    def upto(self, device: str | None = None, stream: str = "detections") -> list[int]:
        return [
            e.seq_upto
            for _, m in self.sent
            if device in (None, m.device)
            for e in m.acks
            if e.stream.value == stream
        ]


def archive(
    path: Path,
    acks: Callable[[str, bytes], None],
    clock: Callable[[], float] = time.time,
    enrolled: Callable[[str], bool] = lambda d: True,
    **cfg: object,
) -> DetectionArchive:
    a = DetectionArchive(
        path,
        ArchiveConfig(enabled=True, flush_interval_s=0.05, **cfg),  # type: ignore[arg-type]
        acks,
        signer=functools.partial(sign, private_key=KEY),
        is_enrolled=enrolled,
        clock=clock,
    )
    a.start()
    return a


def rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT stream, seq FROM detections ORDER BY stream, seq").fetchall()


def test_stores_dedups_and_acks_the_contiguous_run_per_stream(tmp_path: Path) -> None:
    """Redeliveries are dropped; detections and florence2 streams are acked apart."""
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks)
    try:
        for seq in (0, 1, 2, 1, 4):  # a redelivery of 1, and a hole at 3
            a.on_message(TOPIC, message(seq))
        a.on_message(TOPIC, message(0, "florence2"))
        wait_for(lambda: a.stats.stored == 5, 10)
        wait_for(lambda: acks.upto() == [2] and acks.upto(stream="florence2") == [0], 10)
        assert a.stats.duplicates == 1
        a.on_message(TOPIC, message(3))  # the replay fills the hole
        wait_for(lambda: acks.upto() == [2, 4], 10)
    finally:
        a.stop()
    assert acks.sent[0][0] == "edge/jet-0/ack"
    assert rows(tmp_path / "d.sqlite3") == [("detections", s) for s in range(5)] + [
        ("florence2", 0)
    ]


def test_malformed_and_mismatched_messages_are_counted_not_stored(tmp_path: Path) -> None:
    """Bad JSON, a bare schema and a payload for another topic are refused and counted."""
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


def test_one_poisoned_message_does_not_stop_acks_for_the_fleet(tmp_path: Path) -> None:
    """A boot_id the ack format refuses is dropped at ingest; the other device is still acked."""
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks)
    try:
        poison = json.loads(message(0, device="evil"))
        poison["boot_id"] = "x" * 300  # valid JSON string, impossible in an ack entry
        a.on_message("edge/evil/cameras/cam-a/detections", json.dumps(poison).encode())
        for seq in range(3):
            a.on_message("edge/good/cameras/cam-a/detections", message(seq, device="good"))
        wait_for(lambda: acks.upto("good") == [2], 10)
        assert a.stats.malformed == 1
        for seq in range(3, 6):
            a.on_message("edge/good/cameras/cam-a/detections", message(seq, device="good"))
        wait_for(lambda: acks.upto("good") == [2, 5], 10)
    finally:
        a.stop()
    assert ("detections", 0) in rows(tmp_path / "d.sqlite3")
    with sqlite3.connect(tmp_path / "d.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM detections WHERE device='evil'").fetchone()[0] == 0


def test_ten_thousand_random_boot_ids_keep_memory_bounded(tmp_path: Path) -> None:
    """A device inventing boot ids fills only its own capped share of open streams."""
    acks = Acks()
    rng = random.Random(11)
    a = archive(tmp_path / "d.sqlite3", acks, max_streams_per_device=8)
    try:
        for i in range(10_000):
            boot = f"{rng.getrandbits(64):016x}"
            a.on_message(
                "edge/noisy/cameras/cam-a/detections",
                detection_payload(5, "noisy", boot_id=boot),
            )
            if i % 2000 == 0:
                good = message(i // 2000, device="good")
                a.on_message("edge/good/cameras/cam-a/detections", good)
        wait_for(lambda: a.stats.stored == 10_005, 60)
        wait_for(lambda: acks.upto("good")[-1:] == [4], 10)
        assert a.tracker.open_streams("noisy") == 8
        assert a.stats.streams_evicted == 10_000 - 8
        assert len(a.tracker.streams) == 9
    finally:
        a.stop()


def test_device_not_enrolled_is_counted_and_ignored(tmp_path: Path) -> None:
    """Detections from an id the gateway does not know are neither stored nor acked."""
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks, enrolled=lambda d: d == "jet-0")
    try:
        a.on_message("edge/rogue/cameras/cam-a/detections", message(0, device="rogue"))
        a.on_message(TOPIC, message(0))
        wait_for(lambda: a.stats.stored == 1 and acks.upto() == [0], 10)
        assert a.stats.unknown_device == 1
        assert acks.upto("rogue") == []
    finally:
        a.stop()


def test_replay_past_a_hole_the_device_still_holds_is_not_acked(tmp_path: Path) -> None:
    """Reviewer's scenario: 50 lost twice, 51 replayed; without the device's mark no skip."""
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks)
    try:
        for seq in [*range(50), 51, 52]:
            a.on_message(TOPIC, message(seq))
        wait_for(lambda: acks.upto()[-1:] == [49], 10)
        for seq in (51, 52):  # the replay: 50 lost on the way again
            a.on_message(TOPIC, message(seq))
        wait_for(lambda: a.stats.duplicates == 2, 10)
        a.on_message(TOPIC, message(53))
        a.on_message(TOPIC, message(0, "florence2"))  # acked only by a batch after the replay
        wait_for(lambda: acks.upto(stream="florence2") == [0], 10)
        assert max(acks.upto()) == 49
        assert a.stats.gaps_skipped == 0
    finally:
        a.stop()


def test_hole_below_the_devices_mark_is_skipped(tmp_path: Path) -> None:
    """The device declares it holds nothing below 5 any more: 3 and 4 are given up, counted."""
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks)
    try:
        for seq in (0, 1, 2):
            a.on_message(TOPIC, message(seq, oldest_unacked_seq=0))
        a.on_message(TOPIC, message(5, oldest_unacked_seq=5))
        wait_for(lambda: acks.upto()[-1:] == [5], 10)
        assert a.stats.gaps_skipped == 2
    finally:
        a.stop()


def test_restart_resumes_acks_from_the_file(tmp_path: Path) -> None:
    """A new archive on the same file goes on from the stored ack, not from seq 0."""
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
        assert set(acks2.upto()) <= {2, 3}
    finally:
        b.stop()


def test_retention_deletes_old_rows(tmp_path: Path) -> None:
    """Rows older than retention_days go at the next hourly pass."""
    now = [1_000_000.0]
    acks = Acks()
    a = archive(tmp_path / "d.sqlite3", acks, clock=lambda: now[0], retention_days=1)
    try:
        a.on_message(TOPIC, message(0))
        wait_for(lambda: a.stats.stored == 1, 10)
        now[0] += 2 * 86400  # two days later the hourly retention pass runs
        a.on_message(TOPIC, message(1))
        wait_for(lambda: a.stats.stored == 2, 10)
        wait_for(lambda: rows(tmp_path / "d.sqlite3") == [("detections", 1)], 10)
    finally:
        a.stop()


def test_size_cap_prunes_the_oldest_rows_and_counts_them(tmp_path: Path) -> None:
    """Past max_bytes the oldest messages go first; the newest stay."""
    acks = Acks()
    clock = iter(range(1_000_000, 2_000_000))
    a = archive(
        tmp_path / "d.sqlite3", acks, clock=lambda: float(next(clock)), max_bytes=1024 * 1024
    )
    try:
        for seq in range(3000):  # ~1 KiB each: about 3 MiB offered
            a.on_message(TOPIC, message(seq))
        wait_for(lambda: a.stats.stored == 3000, 30)
        wait_for(lambda: a.stats.pruned > 0, 10)
        assert a.db.size_bytes() <= 1024 * 1024
    finally:
        a.stop()
    kept = [s for _, s in rows(tmp_path / "d.sqlite3")]
    assert 2999 in kept and 0 not in kept


def test_a_v1_archive_file_is_migrated_to_streams(tmp_path: Path) -> None:
    """Rows keyed by `source` and acks per camera become rows and acks per stream."""
    path = tmp_path / "d.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE detections (device TEXT NOT NULL, camera TEXT NOT NULL, boot_id TEXT "
            "NOT NULL, source TEXT NOT NULL, seq INTEGER NOT NULL, ts TEXT NOT NULL, received "
            "REAL NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (device, camera, boot_id, source,"
            " seq)) WITHOUT ROWID; CREATE INDEX detections_received ON detections (received);"
            "CREATE TABLE acked (device TEXT NOT NULL, boot_id TEXT NOT NULL, camera TEXT NOT "
            "NULL, seq_upto INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (device, boot_id, "
            "camera)) WITHOUT ROWID;"
        )
        now = time.time()
        for source in ("yolo", "florence2"):
            db.execute(
                "INSERT INTO detections VALUES ('jet-0','cam-a',?,?,0,'t',?,x'00')",
                (BOOT, source, now),
            )
        db.execute("INSERT INTO acked VALUES ('jet-0',?,'cam-a',0,?)", (BOOT, now))
    acks = Acks()
    a = archive(path, acks)
    try:
        a.on_message(TOPIC, message(1))
        wait_for(lambda: acks.upto() == [1], 10)  # resumed from the migrated ack of seq 0
    finally:
        a.stop()
    assert rows(path) == [("detections", 0), ("detections", 1), ("florence2", 0)]
