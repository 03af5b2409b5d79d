"""The SQLite WAL outbox on real files: order, deletes, caps, disk full, restarts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent.publish.outbox import Budget, Outbox, OutboxError, OutboxMessage, open_outbox
from tests.helpers.tmpfs import small_tmpfs

TOPIC = "edge/dev-a/cameras/cam1/detections"


def msg(seq: int, pad: int = 100, camera: str = "cam1", boot: str = "b1") -> OutboxMessage:
    return OutboxMessage(TOPIC, camera, boot, seq, 1, b"x" * pad)


def open_box(tmp_path: Path, max_bytes: int = 4 << 20, max_rows: int = 100_000) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", max_bytes=max_bytes, max_rows=max_rows)


def test_rows_come_back_in_commit_order_after_a_cursor(tmp_path: Path) -> None:
    """next_batch returns rows after the cursor, in commit order, at most `limit`."""
    with open_box(tmp_path) as box:
        box.append([msg(i) for i in range(10)])
        first = box.next_batch(0, 4)
        rest = box.next_batch(first[-1].id, 100)
        assert [r.seq for r in first + rest] == list(range(10))
        assert len(first) == 4


def test_delete_removes_only_the_given_rows_and_updates_counters(tmp_path: Path) -> None:
    """Deleting delivered ids leaves the others, and count/bytes follow."""
    with open_box(tmp_path) as box:
        box.append([msg(i) for i in range(5)])
        rows = box.next_batch(0, 10)
        assert box.delete([rows[1].id, rows[3].id]) == 2
        assert [r.seq for r in box.next_batch(0, 10)] == [0, 2, 4]
        assert box.count == 3
        assert box.bytes == 3 * msg(0).size


def test_ids_are_never_reused_after_the_outbox_empties(tmp_path: Path) -> None:
    """A cursor past deleted rows still sees new rows (AUTOINCREMENT ids)."""
    with open_box(tmp_path) as box:
        box.append([msg(0)])
        row = box.next_batch(0, 1)[0]
        box.delete([row.id])
        box.append([msg(1)])
        assert [r.seq for r in box.next_batch(row.id, 10)] == [1]


def test_committed_rows_survive_kill9_of_the_writer(tmp_path: Path) -> None:
    """Rows appended by a process that is then SIGKILLed are all there on reopen."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from agent.publish.outbox import Outbox, OutboxMessage\n"
        f"box = Outbox(Path({str(tmp_path / 'outbox.sqlite3')!r}), 4 << 20, 100000)\n"
        "for i in range(500):\n"
        f"    box.append([OutboxMessage({TOPIC!r}, 'cam1', 'b1', i, 1, b'x' * 100)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    assert proc.returncode == -9
    with open_box(tmp_path) as box:
        assert [r.seq for r in box.next_batch(0, 1000)] == list(range(500))
        assert box.count == 500


@pytest.mark.parametrize(
    ("max_rows", "max_bytes", "pad"),
    [
        (50, 4 << 20, 100),  # the row cap binds
        (100_000, 256 * 1024, 1000),  # the byte cap binds
    ],
)
def test_caps_drop_the_oldest_and_count_them(
    tmp_path: Path, max_rows: int, max_bytes: int, pad: int
) -> None:
    """Past a cap the oldest rows go, the newest stay contiguous, and every drop is counted."""
    n = 1000
    with open_box(tmp_path, max_bytes=max_bytes, max_rows=max_rows) as box:
        for i in range(n):
            box.append([msg(i, pad)])
        seqs = [r.seq for r in box.next_batch(0, n)]
        assert box.dropped > 0
        assert box.count + box.dropped == n
        assert seqs == list(range(n - len(seqs), n))
        assert box.count <= max_rows
        assert box.disk_bytes() <= max_bytes


def test_disk_full_drops_oldest_instead_of_raising(tmp_path: Path) -> None:
    """SQLITE_FULL (a full disk, here max_page_count) frees the oldest rows; no exception."""
    with open_box(tmp_path) as box:
        box.append([msg(i, 2000) for i in range(100)])
        used = box._db.execute("PRAGMA page_count").fetchone()[0]
        box._db.execute(f"PRAGMA max_page_count={used}")  # the "disk" is now full
        dropped = box.append([msg(100 + i, 2000) for i in range(20)])
        assert dropped > 0
        seqs = [r.seq for r in box.next_batch(0, 1000)]
        assert seqs[-20:] == list(range(100, 120)), "the new rows were not stored"
        assert box.count + box.dropped == 120


def test_gateway_ack_deletes_only_pubacked_rows_of_that_camera_and_boot(tmp_path: Path) -> None:
    """An ack up to seq N deletes PUBACKed rows <= N of its (boot, camera) and nothing else."""
    with open_box(tmp_path) as box:
        box.append([msg(i) for i in range(5)] + [msg(i, camera="cam2") for i in range(5)])
        rows = box.next_batch(0, 100)
        box.mark_pubacked([r.id for r in rows if r.seq <= 3])  # seq 4 not PUBACKed yet
        assert box.delete_acked(("b1", "cam1", "detections"), 10) == 4
        assert box.delete_acked(("other-boot", "cam2", "detections"), 10) == 0
        left = [(r.camera, r.seq) for r in box.next_batch(0, 100)]
        assert left == [("cam1", 4)] + [("cam2", i) for i in range(5)]


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    """A corrupt outbox file raises OutboxError naming the path."""
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="outbox.sqlite3"):
        Outbox(path, 4 << 20, 1000)


def test_a_cap_too_small_for_sqlite_is_refused() -> None:
    """A byte cap that cannot hold the database itself is refused up front."""
    with pytest.raises(OutboxError, match="too small"):
        Budget.for_cap(16 * 1024)


def test_outbox_uses_wal_mode(tmp_path: Path) -> None:
    """The file is in WAL journal mode (readers never block the writer)."""
    with open_box(tmp_path) as box:
        box.append([msg(0)])
    mode = sqlite3.connect(tmp_path / "outbox.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode[0] == "wal"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs (needs root to mount; skipped with the reason otherwise)."""
    with small_tmpfs(tmp_path / "small-fs", "4m") as mnt:
        yield mnt


def test_a_really_full_disk_keeps_the_newest_and_counts_the_rest(small_fs: Path) -> None:
    """ENOSPC on a real file system: no exception, newest rows kept, every drop counted."""
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (3 * 1024 * 1024))  # something else fills most of the disk
    n = 3000
    # A cap bigger than the free space: the disk, not the cap, is what runs out.
    with Outbox(small_fs / "outbox.sqlite3", max_bytes=4 << 20, max_rows=10**6) as box:
        with structlog.testing.capture_logs() as events:
            for i in range(n):
                box.append([msg(i, 600)])
        assert "outbox.low_disk_space" in {e["event"] for e in events}
        seqs = [r.seq for r in box.next_batch(0, n)]
        assert box.count + box.dropped == n
        assert seqs == list(range(n - len(seqs), n)), "not the newest, or not contiguous"
        assert box.count > 0
        pinned = box.count
        filler.unlink()  # space comes back: the outbox may grow again
        for i in range(n, n + 1000):
            box.append([msg(i, 600)])
        assert box.count > pinned


OLD_SCHEMA = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, camera TEXT NOT NULL, boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL, qos INTEGER NOT NULL, size INTEGER NOT NULL,
    pubacked INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL
);
CREATE INDEX outbox_acked ON outbox (boot_id, camera, seq) WHERE pubacked = 1;
"""


def test_an_outbox_from_before_streams_is_migrated(tmp_path: Path) -> None:
    """An outbox written without the stream column opens with its rows as `detections`."""
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.executemany(
        "INSERT INTO outbox (id, topic, camera, boot_id, seq, qos, size, payload) "
        "VALUES (?, ?, 'cam1', 'b1', ?, 1, 10, x'7b7d')",
        [(i + 1, TOPIC, i) for i in range(3)],
    )
    db.commit()
    db.close()
    with Outbox(path, 4 << 20, 1000) as box:
        assert [(r.seq, r.stream) for r in box.next_batch(0, 10)] == [
            (0, "detections"),
            (1, "detections"),
            (2, "detections"),
        ]
        box.append([OutboxMessage(TOPIC, "cam1", "b1", 0, 1, b"{}", "florence2")])
        assert box.next_batch(3, 10)[0].stream == "florence2"


def test_gateway_ack_deletes_only_rows_of_its_stream(tmp_path: Path) -> None:
    """A detections ack never deletes florence2 rows of the same camera and boot."""
    with open_box(tmp_path) as box:
        box.append(
            [msg(i) for i in range(5)]
            + [OutboxMessage(TOPIC, "cam1", "b1", i, 1, b"{}", "florence2") for i in range(3)]
        )
        box.mark_pubacked(r.id for r in box.next_batch(0, 100))
        assert box.delete_acked(("b1", "cam1", "detections"), 10) == 5
        assert [(r.stream, r.seq) for r in box.next_batch(0, 100)] == [
            ("florence2", 0),
            ("florence2", 1),
            ("florence2", 2),
        ]
        assert box.delete_acked(("b1", "cam1", "florence2"), 1) == 2


def test_lowest_seqs_are_per_stream(tmp_path: Path) -> None:
    """lowest_seqs gives the lowest seq stored of each (boot, camera, stream)."""
    with open_box(tmp_path) as box:
        box.append([msg(i) for i in range(5)] + [msg(i, camera="cam2") for i in range(2, 4)])
        box.append([OutboxMessage(TOPIC, "cam1", "b1", 7, 1, b"{}", "florence2")])
        box.delete([box.next_batch(0, 1)[0].id])  # cam1 detections seq 0 delivered
        assert box.lowest_seqs() == {
            ("b1", "cam1", "detections"): 1,
            ("b1", "cam2", "detections"): 2,
            ("b1", "cam1", "florence2"): 7,
        }


def test_a_corrupt_outbox_is_moved_aside_and_replaced(tmp_path: Path) -> None:
    """open_outbox moves random bytes aside (kept for inspection) and opens a fresh outbox."""
    path = tmp_path / "outbox.sqlite3"
    junk = bytes(range(256)) * 64
    path.write_bytes(junk)
    with structlog.testing.capture_logs() as events:
        box, aside = open_outbox(path, 4 << 20, 1000)
    with box:
        assert aside is not None and aside.name.startswith("outbox.sqlite3.corrupt-")
        assert aside.read_bytes() == junk
        assert box.count == 0
        box.append([msg(0)])
        assert box.count == 1
    assert any(e["event"] == "outbox.corrupt_moved_aside" for e in events)


def test_an_unusable_outbox_path_is_not_moved_aside(tmp_path: Path) -> None:
    """A path that cannot be opened (a directory) is an error, not corruption: nothing moves."""
    path = tmp_path / "outbox.sqlite3"
    path.mkdir()
    with pytest.raises(OutboxError) as info:
        open_outbox(path, 4 << 20, 1000)
    assert not info.value.corrupt and path.is_dir()
