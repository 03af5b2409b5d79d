"""Downloads against a real loopback HTTP server with faults: resume, cut, reject, clean up."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.contracts.ota import OtaRejectedError, Reason
from agent.ota.download import DownloadSettings, download_artifact, verify_artifact
from tests.helpers.broker import free_port
from tests.helpers.tmpfs import small_tmpfs
from tests.ota.artifact_server import ArtifactServer

DATA = os.urandom(256 * 1024)
FAST = DownloadSettings(
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
    download_deadline_s=20.0,
    download_attempts=3,
    retry_backoff_s=0.0,
    disk_margin_bytes=0,
    progress_interval_s=0.0,
)


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    """A fault-injecting artifact server on a free loopback port."""
    with ArtifactServer() as s:
        yield s


class Watch:
    """Progress callback that also records the largest size of the file on disk."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.calls: list[tuple[int, int]] = []
        self.max_on_disk = 0

    def __call__(self, have: int, total: int) -> None:
        self.calls.append((have, total))
        if self.dest.exists():
            self.max_on_disk = max(self.max_on_disk, self.dest.stat().st_size)


def fetch(
    url: str, dest: Path, settings: DownloadSettings = FAST, length: int = len(DATA)
) -> Watch:
    watch = Watch(dest)
    download_artifact(url, dest, length, settings, progress=watch)
    return watch


def test_clean_download_matches_and_reports_progress(
    server: ArtifactServer, tmp_path: Path
) -> None:
    """An honest server yields the exact bytes, with progress up to the total."""
    dest = tmp_path / "a.part"
    watch = fetch(server.add("a", DATA), dest)
    verify_artifact(dest, len(DATA), __import__("hashlib").sha256(DATA).hexdigest())
    assert dest.read_bytes() == DATA
    assert watch.calls[0] == (0, len(DATA)) and watch.calls[-1] == (len(DATA), len(DATA))


def test_reset_mid_body_resumes_with_range(server: ArtifactServer, tmp_path: Path) -> None:
    """A connection reset after 100 KiB is resumed with `Range: bytes=<have>-`, not restarted."""
    dest = tmp_path / "a.part"
    url = server.add("a", DATA, "reset", reset_at=100 * 1024)
    watch = fetch(url, dest)
    art = server.artifacts["/a"]
    assert dest.read_bytes() == DATA
    assert art.requests[0] is None
    assert art.requests[1] is not None and art.requests[1].startswith("bytes=")
    resumed_at = int(art.requests[1][6:].rstrip("-"))
    assert 0 < resumed_at <= 100 * 1024
    assert watch.max_on_disk <= len(DATA)
    assert server.sent < len(DATA) + 100 * 1024 + 1  # the resumed part was not sent twice


FAILURES = [
    # body ends halfway on every attempt
    ("truncate", {}, {}, Reason.TRUNCATED),
    # no Content-Length and 1 MiB beyond the manifest's length
    ("oversize", {}, {}, Reason.OVERSIZED),
    # one byte per second, deadline 2.5 s
    ("drip", {"drip_s": 1.0}, {"download_deadline_s": 2.5}, Reason.DEADLINE_EXCEEDED),
    # 16 bytes then silence longer than the read timeout, on both attempts
    (
        "stall",
        {"stall_s": 3.0},
        {"read_timeout_s": 0.4, "download_attempts": 2},
        Reason.DOWNLOAD_STALLED,
    ),
    # the server answers 404
    ("status", {"status": 404}, {}, Reason.DOWNLOAD_FAILED),
    # a server error on every attempt
    ("status", {"status": 503}, {}, Reason.DOWNLOAD_FAILED),
]


@pytest.mark.parametrize(
    ("fault", "server_kw", "settings_kw", "reason"),
    FAILURES,
    ids=[f"{f[0]}-{f[3].value}" for f in FAILURES],
)
def test_faulty_server_rejected_without_partial_file(
    server: ArtifactServer,
    tmp_path: Path,
    fault: str,
    server_kw: dict,
    settings_kw: dict,
    reason: Reason,
) -> None:
    """Each server fault ends in its own reason; no partial file stays and disk use <= length."""
    dest = tmp_path / "a.part"
    url = server.add("a", DATA, fault, **server_kw)
    watch = Watch(dest)
    with pytest.raises(OtaRejectedError) as info:
        download_artifact(url, dest, len(DATA), replace(FAST, **settings_kw), progress=watch)
    assert info.value.reason is reason, info.value.detail
    assert not dest.exists()
    assert watch.max_on_disk <= len(DATA)


@pytest.mark.parametrize(
    "where", [0, len(DATA) // 2, len(DATA) - 1], ids=["start", "middle", "end"]
)
def test_flipped_byte_fails_verification(
    server: ArtifactServer, tmp_path: Path, where: int
) -> None:
    """One flipped byte (start, middle, end) downloads fully but fails the sha256 check."""
    import hashlib

    dest = tmp_path / "a.part"
    fetch(server.add("a", DATA, "flip", flip_at=where), dest)
    with pytest.raises(OtaRejectedError) as info:
        verify_artifact(dest, len(DATA), hashlib.sha256(DATA).hexdigest())
    assert info.value.reason is Reason.HASH_MISMATCH


def test_other_artifact_at_url_is_mismatch(server: ArtifactServer, tmp_path: Path) -> None:
    """A manifest for one artifact served with another (of another size) is refused up front."""
    dest = tmp_path / "a.part"
    url = server.add("a", DATA[:1000] * 3)
    with pytest.raises(OtaRejectedError) as info:
        fetch(url, dest)
    assert info.value.reason is Reason.ARTIFACT_MISMATCH
    assert not dest.exists()


def test_refused_connection_fails(tmp_path: Path) -> None:
    """Nothing listening on the port ends as download_failed after the attempts."""
    with pytest.raises(OtaRejectedError) as info:
        fetch(f"http://127.0.0.1:{free_port()}/a", tmp_path / "a.part")
    assert info.value.reason is Reason.DOWNLOAD_FAILED


def test_not_enough_space_before_start(server: ArtifactServer, tmp_path: Path) -> None:
    """When free space is below length + margin, nothing is requested."""
    url = server.add("a", DATA)
    settings = replace(FAST, disk_margin_bytes=shutil.disk_usage(tmp_path).free)
    with pytest.raises(OtaRejectedError) as info:
        fetch(url, tmp_path / "a.part", settings)
    assert info.value.reason is Reason.DISK_FULL
    assert server.artifacts["/a"].requests == []


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root, as on the dev machines and CI)."""
    with small_tmpfs(tmp_path / "small", "1m") as mnt:
        yield mnt


def test_disk_full_mid_download(server: ArtifactServer, small_fs: Path) -> None:
    """ENOSPC while writing ends as disk_full and the partial file is removed."""
    dest = small_fs / "staging" / "a.part"
    url = server.add("a", DATA * 3)  # 768 KiB fits the 1 MiB disk when the download starts

    def fill(have: int, total: int) -> None:
        if have > 0 and not (small_fs / "filler").exists():
            # another writer takes the space the download was counting on
            with open(small_fs / "filler", "wb") as f:
                try:
                    f.write(b"\0" * (900 * 1024))
                except OSError:
                    pass

    with pytest.raises(OtaRejectedError) as info:
        download_artifact(url, dest, len(DATA) * 3, FAST, progress=fill)
    assert info.value.reason is Reason.DISK_FULL
    assert not dest.exists()
