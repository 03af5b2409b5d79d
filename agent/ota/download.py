"""Artifact download: HTTP(S) with Range resume, per-read timeout, overall deadline, size cap.

The file on disk never grows past the manifest's `length`: a body that goes beyond it is cut
and rejected (`oversized`). Free space is checked before the first byte. Failures raise
`OtaRejectedError` with a distinct reason and delete the partial file.
`verify_artifact` re-reads the finished file and checks its length and sha256 before
anything else touches it.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx
import structlog

from agent.contracts.ota import OtaRejectedError, Reason
from agent.util.backoff import backoff_delay
from agent.util.files import file_sha256

log = structlog.get_logger(__name__)

ProgressFn = Callable[[int, int], None]
"""progress(bytes received so far, total length)."""

CHUNK = 64 * 1024
BACKOFF_CAP_S = 10.0


@dataclass(frozen=True)
class DownloadSettings:
    """Limits of one download (the OtaConfig fields of the same names)."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 15.0
    download_deadline_s: float = 900.0
    download_attempts: int = 5
    retry_backoff_s: float = 0.5
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
    with (
        open(dest, "wb") as out,
        httpx.Client(transport=transport, follow_redirects=True) as client,
    ):
        _Transfer(client, url, out, length, settings, progress, cancel).run()


def _cancelled() -> OtaRejectedError:
    return OtaRejectedError(Reason.INTERRUPTED, "download cancelled (daemon stopping)")


@dataclass(eq=False)
class _Transfer:
    """One download: attempts with Range resume until `length` bytes are on disk."""

    client: httpx.Client
    url: str
    out: BinaryIO
    length: int
    settings: DownloadSettings
    progress: ProgressFn | None
    cancel: threading.Event | None
    start: float = field(default_factory=time.monotonic, init=False)
    have: int = field(default=0, init=False)
    _last_progress: float = field(default=0.0, init=False)

    @property
    def deadline(self) -> float:
        """When the download must be finished (monotonic)."""
        return self.start + self.settings.download_deadline_s

    def report(self, force: bool = False) -> None:
        """Progress at most every `progress_interval_s` (always when `force`)."""
        now = time.monotonic()
        if self.progress is None:
            return
        if force or now - self._last_progress >= self.settings.progress_interval_s:
            self._last_progress = now
            self.progress(self.have, self.length)

    def run(self) -> None:
        """Attempts until done; raise the reason of the last failure when they run out."""
        self.report(force=True)
        last: _Retry | None = None
        for attempt in range(self.settings.download_attempts):
            if self.cancel is not None and self.cancel.is_set():
                raise _cancelled()
            if attempt > 0 and not self._pause(attempt):
                break
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self._attempt(left)
            except _Retry as retry:
                last = retry
                self.have = self.out.tell()
                log.warning(
                    "download attempt ended early",
                    attempt=attempt + 1,
                    kind=retry.kind,
                    detail=retry.detail,
                    have=self.have,
                    length=self.length,
                )
                continue
            self.out.flush()
            os.fsync(self.out.fileno())
            self.report(force=True)
            return
        raise self._give_up(last)

    def _pause(self, attempt: int) -> bool:
        """Back off before `attempt` (>= 1); False when the deadline would pass meanwhile."""
        b = self.settings.retry_backoff_s
        pause = 0.0 if b <= 0 else backoff_delay(attempt - 1, min(b, BACKOFF_CAP_S), BACKOFF_CAP_S)
        if time.monotonic() + pause >= self.deadline:
            return False
        if self.cancel is None:
            time.sleep(pause)
        elif self.cancel.wait(pause):
            raise _cancelled()
        return True

    def _give_up(self, last: _Retry | None) -> OtaRejectedError:
        """The reason when no attempt finished: deadline, truncated, stalled or failed."""
        have, length, s = self.have, self.length, self.settings
        if time.monotonic() >= self.deadline:
            elapsed = time.monotonic() - self.start
            return OtaRejectedError(
                Reason.DEADLINE_EXCEEDED,
                f"{have} of {length} bytes after {elapsed:.1f} s "
                f"(deadline {s.download_deadline_s} s)",
            )
        if last is None or last.kind == "closed":
            return OtaRejectedError(
                Reason.TRUNCATED,
                f"body ended at {have} of {length} bytes on each of {s.download_attempts} attempts",
            )
        if last.kind == "stalled":
            return OtaRejectedError(
                Reason.DOWNLOAD_STALLED,
                f"no data for {s.read_timeout_s} s, {have} of {length} bytes, "
                f"{s.download_attempts} attempts",
            )
        return OtaRejectedError(Reason.DOWNLOAD_FAILED, f"{last.detail} ({have} of {length} bytes)")

    def _attempt(self, left: float) -> None:
        """One GET (with Range when resuming); transport errors become _Retry."""
        s = self.settings
        headers = self.settings.request_headers()
        if self.have > 0:
            headers["Range"] = f"bytes={self.have}-"
        connect = min(s.connect_timeout_s, left)
        timeout = httpx.Timeout(
            connect=connect, read=min(s.read_timeout_s, left), write=connect, pool=connect
        )
        try:
            with self.client.stream("GET", self.url, headers=headers, timeout=timeout) as resp:
                self._accept(resp)
                self._copy(resp)
        except httpx.TimeoutException as err:
            self.out.flush()
            if time.monotonic() >= self.deadline:
                raise OtaRejectedError(
                    Reason.DEADLINE_EXCEEDED,
                    f"{self.out.tell()} of {self.length} bytes when the deadline passed",
                ) from None
            kind = "stalled" if isinstance(err, httpx.ReadTimeout) else "error"
            raise _Retry(kind, f"{type(err).__name__}: {err}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as err:
            self.out.flush()
            raise _Retry("closed", f"{type(err).__name__}: {err}") from None
        except httpx.TransportError as err:
            self.out.flush()
            raise _Retry("error", f"{type(err).__name__}: {err}") from None
        except httpx.InvalidURL as err:
            raise OtaRejectedError(Reason.DOWNLOAD_FAILED, f"invalid URL: {err}") from None
        self.out.flush()
        if self.have < self.length:
            raise _Retry("closed", f"body ended at {self.have} of {self.length} bytes")

    def _accept(self, resp: httpx.Response) -> None:
        """Check status, size and encoding of a response before its body is written."""
        length = self.length
        if resp.status_code == 206 and self.have > 0:
            self._check_resume(resp)
        elif resp.status_code == 200:
            if self.have > 0:  # the server ignored Range: start over
                self._restart()
            declared = resp.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) != length:
                raise OtaRejectedError(
                    Reason.ARTIFACT_MISMATCH,
                    f"server's artifact has {declared} bytes, the manifest says {length}",
                )
        elif resp.status_code >= 500 or resp.status_code == 429:
            raise _Retry("error", f"HTTP {resp.status_code} from {self.url}")
        else:
            raise OtaRejectedError(
                Reason.DOWNLOAD_FAILED, f"HTTP {resp.status_code} from {self.url}"
            )
        encoding = resp.headers.get("content-encoding", "identity").lower()
        if encoding not in ("identity", ""):
            raise OtaRejectedError(
                Reason.DOWNLOAD_FAILED, f"unexpected Content-Encoding {encoding!r}"
            )

    def _check_resume(self, resp: httpx.Response) -> None:
        """A 206 must resume exactly where we are, of an artifact of the manifest's size."""
        cr = _parse_content_range(resp.headers.get("content-range"))
        if cr is None:
            raise _Retry("error", "206 without a valid Content-Range")
        if cr[1] is not None and cr[1] != self.length:
            raise OtaRejectedError(
                Reason.ARTIFACT_MISMATCH,
                f"server's artifact has {cr[1]} bytes, the manifest says {self.length}",
            )
        if cr[0] != self.have:
            self._restart()
            raise _Retry("error", f"server resumed at {cr[0]}, asked for {self.have}")

    def _restart(self) -> None:
        self.out.seek(0)
        self.out.truncate()
        self.have = 0

    def _copy(self, resp: httpx.Response) -> None:
        """Write the body as read from the socket, never past `length` or the deadline."""
        for chunk in resp.iter_raw():  # as read from the socket: no buffering to a size
            if self.have + len(chunk) > self.length:
                raise OtaRejectedError(
                    Reason.OVERSIZED,
                    f"server sent more than the manifest's {self.length} bytes",
                )
            self.out.write(chunk)
            self.have += len(chunk)
            self.report()
            if time.monotonic() >= self.deadline:
                raise OtaRejectedError(
                    Reason.DEADLINE_EXCEEDED,
                    f"{self.have} of {self.length} bytes when the deadline passed",
                )
            if self.cancel is not None and self.cancel.is_set():
                raise _cancelled()


def verify_artifact(path: Path, length: int, sha256: str, chunk: int = 1 << 20) -> None:
    """Re-read the downloaded file: exact length, then sha256. Raises OtaRejectedError."""
    size = path.stat().st_size
    if size != length:
        raise OtaRejectedError(Reason.TRUNCATED, f"file has {size} bytes, manifest {length}")
    digest = file_sha256(path, chunk)
    if digest != sha256:
        raise OtaRejectedError(
            Reason.HASH_MISMATCH, f"sha256 {digest} differs from the manifest's {sha256}"
        )
