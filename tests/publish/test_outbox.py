"""The SQLite WAL outbox on real files: order, deletes, caps, disk full, restarts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent.publish.outbox import Budget, Outbox, OutboxError, OutboxMessage
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
