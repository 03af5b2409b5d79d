"""Upload captures to the gateway's dataset intake, with retry and a persistent queue.

The queue is the capture store's `.pending/` tickets: a ticket is removed only after the
gateway answered 2xx (stored) or 409 (already stored by an earlier attempt whose answer was
lost). Network errors, timeouts, 401/403 (token not yet registered) and 5xx are retried with
exponential backoff; other 4xx answers (the gateway refuses this capture for good, e.g. 400,
413) move the ticket to `.rejected/` and are logged. Request format: docs/gateway.md,
`agent.gateway.intake`:

    POST {url}/v1/intake/{device}/{camera}
    Authorization: Bearer <token>
    multipart/form-data: image (JPEG, file name = stem.jpg), labels (YOLO txt), meta (JSON)
"""

from __future__ import annotations

import enum
from pathlib import Path

import httpx
import structlog

from agent.fallback.capture import CaptureStore
from agent.fallback.config import UploadConfig
from agent.util.worker import Worker

log = structlog.get_logger(__name__)


class UploadOutcome(str, enum.Enum):
    DONE = "done"
    RETRY = "retry"
    REJECTED = "rejected"


def classify_status(status: int) -> UploadOutcome:
    """Map an HTTP status of the intake to what the queue does with the ticket."""
    if 200 <= status < 300 or status == 409:
        return UploadOutcome.DONE
    if status in (401, 403, 408, 425, 429) or status >= 500:
        return UploadOutcome.RETRY
    return UploadOutcome.REJECTED


class Uploader:
    """A thread draining the capture store's pending tickets to the gateway intake."""

    def __init__(
        self,
        cfg: UploadConfig,
        device: str,
        store: CaptureStore,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.store = store
        self._token = cfg.token()
        self._client = httpx.Client(timeout=cfg.timeout_s, transport=transport)
        self._worker = Worker("capture-upload", self._loop)
        self.uploaded = 0
        self.rejected = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float) -> None:
        self._worker.stop(timeout)
        self._client.close()

    def wake(self) -> None:
        """Scan the queue now instead of at the next interval."""
        self._worker.wake()

    def _loop(self) -> None:
        delay = 0.0
        while not self._worker.stopping:
            ok = self.drain()
            delay = (
                self.cfg.scan_interval_s
                if ok
                else min(self.cfg.retry_max_s, max(self.cfg.retry_min_s, delay * 2))
            )
            self._worker.rest(delay)

    def drain(self) -> bool:
        """Upload every pending capture once, oldest first; False if one must be retried."""
        for ticket in self.store.pending_tickets():
            if self._worker.stopping:
                return True
            found = self.store.ticket_capture(ticket)
            if found is None:
                continue
            camera, stem = found
            outcome = self.upload_one(camera, stem)
            if outcome == UploadOutcome.DONE:
                self.store.done(ticket)
                self.uploaded += 1
            elif outcome == UploadOutcome.REJECTED:
                rejected = self.store.root / ".rejected"
                rejected.mkdir(exist_ok=True)
                ticket.replace(rejected / ticket.name)
                self.rejected += 1
            else:
                return False
        return True

    def upload_one(self, camera: str, stem: Path) -> UploadOutcome:
        """POST one capture; never raises for network or HTTP errors."""
        url = f"{self.cfg.url.rstrip('/')}/v1/intake/{self.device}/{camera}"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            files = {
                "image": (stem.name + ".jpg", stem.with_suffix(".jpg").read_bytes(), "image/jpeg"),
                "labels": (stem.name + ".txt", stem.with_suffix(".txt").read_bytes(), "text/plain"),
                "meta": (
                    stem.name + ".json",
                    stem.with_suffix(".json").read_bytes(),
                    "application/json",
                ),
            }
        except OSError as err:  # dropped by the quota between listing and reading
            log.warning("capture vanished before upload", stem=str(stem), error=str(err))
            return UploadOutcome.DONE
        try:
            resp = self._client.post(url, files=files, headers=headers)
        except httpx.HTTPError as err:
            self.failures += 1
            self.last_error = f"{type(err).__name__}: {err}"
            log.warning("intake unreachable; will retry", url=url, error=self.last_error)
            return UploadOutcome.RETRY
        outcome = classify_status(resp.status_code)
        if outcome != UploadOutcome.DONE:
            self.failures += 1
            self.last_error = f"HTTP {resp.status_code}: {resp.text[:200]}"
            log.warning(
                "intake refused upload",
                url=url,
                status=resp.status_code,
                outcome=outcome.value,
                body=resp.text[:200],
            )
        return outcome
