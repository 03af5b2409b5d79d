"""Artifact download: HTTP(S) with Range resume, per-read timeout, overall deadline, size cap.

The file on disk never grows past the manifest's `length`: a body that goes beyond it is cut
and rejected (`oversized`). Free space is checked before the first byte. Failures raise
`OtaRejectedError` with a distinct reason and delete the partial file.
`verify_artifact` re-reads the finished file and checks its length and sha256 before
anything else touches it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from agent.ota.protocol import OtaRejectedError, Reason

log = structlog.get_logger(__name__)

ProgressFn = Callable[[int, int], None]
"""progress(bytes received so far, total length)."""

CHUNK = 64 * 1024


@dataclass(frozen=True)
class DownloadSettings:
    """Limits of one download (from OtaConfig)."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 15.0
    deadline_s: float = 900.0
    attempts: int = 5
    backoff_s: float = 0.5
    disk_margin_bytes: int = 16 * 1024 * 1024
    progress_interval_s: float = 1.0
    bearer_token: str | None = None  # the device's gateway token (artifacts are not public)

    def request_headers(self) -> dict[str, str]:
        """Headers of every GET: no compression, and the device's bearer token if it has one."""
        headers = {"Accept-Encoding": "identity"}
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        return headers


class _Retry(Exception):
    """One attempt ended early; `kind` is 'closed', 'stalled' or 'error'."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(detail)


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """'bytes 100-199/1000' -> (100, 1000); '/*' total -> None total; else None."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, total = value[6:].split("/", 1)
        start = int(span.split("-", 1)[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def download_artifact(
    url: str,
    dest: Path,
    length: int,
    settings: DownloadSettings,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Download exactly `length` bytes from `url` into `dest`, resuming with Range.

    Raises:
        OtaRejectedError: disk_full, artifact_mismatch (server announces another size),
            oversized (body longer than `length`), truncated (body ends early on every
            attempt), download_stalled (no bytes within the read timeout on every attempt),
            deadline_exceeded, download_failed (HTTP error, refused connection), interrupted
            (`cancel` was set). The partial file is deleted.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(url, dest, length, settings, progress, cancel, transport)
    except OtaRejectedError:
        dest.unlink(missing_ok=True)
        raise
    except OSError as err:
        dest.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OtaRejectedError(
                Reason.DISK_FULL, f"writing {dest.name}: {err.strerror}"
            ) from None
        raise OtaRejectedError(Reason.DOWNLOAD_FAILED, f"writing {dest.name}: {err}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _download(
    url: str,
    dest: Path,
    length: int,
    settings: DownloadSettings,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
    transport: httpx.BaseTransport | None,
) -> None:
    free = shutil.disk_usage(dest.parent).free
    need = length + settings.disk_margin_bytes
    if free < need:
        raise OtaRejectedError(
            Reason.DISK_FULL,
            f"{free} bytes free in {dest.parent}, need {length} + margin "
            f"{settings.disk_margin_bytes}",
        )
    start = time.monotonic()
    deadline = start + settings.deadline_s
    last_progress = 0.0
    have = 0
    last: _Retry | None = None

    def report(received: int, force: bool = False) -> None:
        nonlocal last_progress
        now = time.monotonic()
        if progress is not None and (force or now - last_progress >= settings.progress_interval_s):
            last_progress = now
            progress(received, length)

    report(0, force=True)
    with (
        open(dest, "wb") as out,
        httpx.Client(transport=transport, follow_redirects=True) as client,
    ):
        for attempt in range(settings.attempts):
            if cancel is not None and cancel.is_set():
                raise OtaRejectedError(Reason.INTERRUPTED, "download cancelled (daemon stopping)")
            if attempt > 0:
                pause = min(settings.backoff_s * 2 ** (attempt - 1), 10.0)
                if time.monotonic() + pause >= deadline:
                    break
                if cancel is None:
                    time.sleep(pause)
                elif cancel.wait(pause):
                    raise OtaRejectedError(
                        Reason.INTERRUPTED, "download cancelled (daemon stopping)"
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                have = _attempt(
                    client, url, out, have, length, settings, left, deadline, cancel, report
                )
            except _Retry as retry:
                last = retry
                have = out.tell()
                log.warning(
                    "download attempt ended early",
                    attempt=attempt + 1,
                    kind=retry.kind,
                    detail=retry.detail,
                    have=have,
                    length=length,
                )
                continue
            if have == length:
                out.flush()
                os.fsync(out.fileno())
                report(have, force=True)
                return
    elapsed = time.monotonic() - start
    if time.monotonic() >= deadline:
        raise OtaRejectedError(
            Reason.DEADLINE_EXCEEDED,
            f"{have} of {length} bytes after {elapsed:.1f} s (deadline {settings.deadline_s} s)",
        )
    if last is None or last.kind == "closed":
        raise OtaRejectedError(
            Reason.TRUNCATED,
            f"body ended at {have} of {length} bytes on each of {settings.attempts} attempts",
        )
    if last.kind == "stalled":
        raise OtaRejectedError(
            Reason.DOWNLOAD_STALLED,
            f"no data for {settings.read_timeout_s} s, {have} of {length} bytes, "
            f"{settings.attempts} attempts",
        )
    raise OtaRejectedError(Reason.DOWNLOAD_FAILED, f"{last.detail} ({have} of {length} bytes)")


def _attempt(
    client: httpx.Client,
    url: str,
    out,  # noqa: ANN001 - a binary file opened for writing
    have: int,
    length: int,
    settings: DownloadSettings,
    left: float,
    deadline: float,
    cancel: threading.Event | None,
    report: Callable[..., None],
) -> int:
    """One GET (with Range when resuming); return the byte count on disk afterwards."""
    headers = settings.request_headers()
    if have > 0:
        headers["Range"] = f"bytes={have}-"
    timeout = httpx.Timeout(
        connect=min(settings.connect_timeout_s, left),
        read=min(settings.read_timeout_s, left),
        write=min(settings.connect_timeout_s, left),
        pool=min(settings.connect_timeout_s, left),
    )
    try:
        with client.stream("GET", url, headers=headers, timeout=timeout) as resp:
            if resp.status_code == 206 and have > 0:
                cr = _parse_content_range(resp.headers.get("content-range"))
                if cr is None:
                    raise _Retry("error", "206 without a valid Content-Range")
                if cr[1] is not None and cr[1] != length:
                    raise OtaRejectedError(
                        Reason.ARTIFACT_MISMATCH,
                        f"server's artifact has {cr[1]} bytes, the manifest says {length}",
                    )
                if cr[0] != have:
                    out.seek(0)
                    out.truncate()
                    raise _Retry("error", f"server resumed at {cr[0]}, asked for {have}")
            elif resp.status_code == 200:
                if have > 0:  # the server ignored Range: start over
                    out.seek(0)
                    out.truncate()
                    have = 0
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) != length:
                    raise OtaRejectedError(
                        Reason.ARTIFACT_MISMATCH,
                        f"server's artifact has {declared} bytes, the manifest says {length}",
                    )
            elif resp.status_code >= 500 or resp.status_code == 429:
                raise _Retry("error", f"HTTP {resp.status_code} from {url}")
            else:
                raise OtaRejectedError(
                    Reason.DOWNLOAD_FAILED, f"HTTP {resp.status_code} from {url}"
                )
            encoding = resp.headers.get("content-encoding", "identity").lower()
            if encoding not in ("identity", ""):
                raise OtaRejectedError(
                    Reason.DOWNLOAD_FAILED, f"unexpected Content-Encoding {encoding!r}"
                )
            for chunk in resp.iter_raw():  # as read from the socket: no buffering to a size
                if have + len(chunk) > length:
                    raise OtaRejectedError(
                        Reason.OVERSIZED,
                        f"server sent more than the manifest's {length} bytes",
                    )
                out.write(chunk)
                have += len(chunk)
                report(have)
                if time.monotonic() >= deadline:
                    raise OtaRejectedError(
                        Reason.DEADLINE_EXCEEDED,
                        f"{have} of {length} bytes when the deadline passed",
                    )
                if cancel is not None and cancel.is_set():
                    raise OtaRejectedError(
                        Reason.INTERRUPTED, "download cancelled (daemon stopping)"
                    )
    except httpx.TimeoutException as err:
        out.flush()
        if time.monotonic() >= deadline:
            raise OtaRejectedError(
                Reason.DEADLINE_EXCEEDED, f"{out.tell()} of {length} bytes when the deadline passed"
            ) from None
        kind = "stalled" if isinstance(err, httpx.ReadTimeout) else "error"
        raise _Retry(kind, f"{type(err).__name__}: {err}") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as err:
        out.flush()
        raise _Retry("closed", f"{type(err).__name__}: {err}") from None
    except httpx.TransportError as err:
        out.flush()
        raise _Retry("error", f"{type(err).__name__}: {err}") from None
    except httpx.InvalidURL as err:
        raise OtaRejectedError(Reason.DOWNLOAD_FAILED, f"invalid URL: {err}") from None
    out.flush()
    if have < length:
        raise _Retry("closed", f"body ended at {have} of {length} bytes")
    return have


def verify_artifact(path: Path, length: int, sha256: str, chunk: int = 1 << 20) -> None:
    """Re-read the downloaded file: exact length, then sha256. Raises OtaRejectedError."""
    size = path.stat().st_size
    if size != length:
        raise OtaRejectedError(Reason.TRUNCATED, f"file has {size} bytes, manifest {length}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    if h.hexdigest() != sha256:
        raise OtaRejectedError(
            Reason.HASH_MISMATCH, f"sha256 {h.hexdigest()} differs from the manifest's {sha256}"
        )
