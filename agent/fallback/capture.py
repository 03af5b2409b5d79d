"""Hard-frame capture: JPEG + YOLO labels (from Florence-2) + JSON sidecar, under a quota.

Layout (one capture = three files with one stem):
    <root>/<camera>/<YYYY-MM-DD UTC>/<YYYYmmddTHHMMSSmmm>-<boot8>-<seq 8 digits>.jpg
                                                                        .txt   YOLO labels
                                                                        .json  sidecar
    <root>/.pending/<camera>@<day>@<stem>       upload ticket (only when uploads are on)

Files are written via temp + rename, the sidecar last: a capture without its sidecar is an
interrupted write and is removed at start. When the root grows past `quota_bytes`, whole
captures are dropped oldest first (their upload tickets too; the drop is counted and logged).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import structlog

from agent.contracts.payloads import DetectionMessage
from agent.fallback.parse import FlorenceResult
from agent.types import Frame
from agent.util.files import atomic_write, is_temp_leftover
from agent.util.labels import yolo_label_line

log = structlog.get_logger(__name__)

CAPTURE_SCHEMA = "edge.capture/1"
SUFFIXES = (".jpg", ".txt", ".json")
PENDING = ".pending"


class CaptureError(OSError):
    """A capture could not be written (encode failure, disk full, over quota by itself)."""


@dataclass(frozen=True)
class Capture:
    """One saved capture: `stem` is the path without suffix; `nbytes` its three files."""

    camera: str
    day: str
    stem: Path
    nbytes: int

    def files(self) -> list[Path]:
        return [self.stem.with_suffix(s) for s in SUFFIXES]

    @property
    def ticket_name(self) -> str:
        return f"{self.camera}@{self.day}@{self.stem.name}"


def yolo_label_lines(result: FlorenceResult, width: int, height: int) -> list[str]:
    """YOLO lines `class cx cy w h` (normalised, clipped to the image) for the boxes mapped to a
    YOLO class that keep an area inside the image."""
    lines = []
    d = result.detections
    for i in range(len(d)):
        cid = int(d.class_id[i])
        if cid < 0:
            continue
        try:
            lines.append(yolo_label_line(cid, *(float(v) for v in d.xyxy[i]), width, height))
        except ValueError:  # empty once clipped: no label, as for an unmapped class
            continue
    return lines


class CaptureStore:
    """Writes captures under `root` and keeps the root under `quota_bytes` (thread-safe)."""

    def __init__(
        self, root: Path, quota_bytes: int, jpeg_quality: int = 92, pending: bool = False
    ) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self.jpeg_quality = jpeg_quality
        self.pending = pending
        self.dropped = 0
        self.dropped_unuploaded = 0
        self._lock = threading.Lock()
        self._items: collections.deque[Capture] = collections.deque()
        self._total = 0
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / PENDING).mkdir(exist_ok=True)
        self._scan()

    @property
    def total_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._items)

    def _scan(self) -> None:
        """Index existing captures oldest first; remove leftovers of interrupted writes."""
        found = []
        for sidecar in self.root.glob("*/*/*.json"):
            stem = sidecar.with_suffix("")
            camera, day = sidecar.parent.parent.name, sidecar.parent.name
            size = sum(
                p.stat().st_size for p in (stem.with_suffix(s) for s in SUFFIXES) if p.exists()
            )
            found.append((sidecar.stat().st_mtime, Capture(camera, day, stem, size)))
        for part in self.root.glob("*/*/.*"):  # temp files of a write killed midway
            if is_temp_leftover(part) or part.name.endswith(".part"):
                part.unlink(missing_ok=True)
        for orphan in self.root.glob("*/*/*.jpg"):
            if not orphan.with_suffix(".json").exists():
                orphan.unlink(missing_ok=True)
                orphan.with_suffix(".txt").unlink(missing_ok=True)
        for _, cap in sorted(found, key=lambda t: (t[0], t[1].stem.name)):
            self._items.append(cap)
            self._total += cap.nbytes

    def save(
        self,
        frame: Frame,
        yolo: DetectionMessage,
        florence: DetectionMessage,
        result: FlorenceResult,
        class_names: tuple[str, ...],
    ) -> Capture:
        """Write one capture; then drop the oldest captures while over quota."""
        ok, jpg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise CaptureError(f"cannot encode frame {frame.image.shape} as JPEG")
        dt = datetime.fromtimestamp(frame.captured_at, tz=timezone.utc)
        day = dt.strftime("%Y-%m-%d")
        stamp = f"{dt.strftime('%Y%m%dT%H%M%S')}{dt.microsecond // 1000:03d}"
        name = f"{stamp}-{yolo.boot_id[:8]}-{yolo.seq:08d}"
        labels = "\n".join(yolo_label_lines(result, frame.width, frame.height))
        sidecar = {
            "schema": CAPTURE_SCHEMA,
            "device": yolo.device,
            "camera": yolo.camera,
            "boot_id": yolo.boot_id,
            "seq": yolo.seq,
            "ts": yolo.ts,
            "frame": {"width": frame.width, "height": frame.height},
            "class_names": list(class_names),
            "labels_from": "florence2",
            "florence2_labels": list(result.labels),
            "yolo": yolo.model_dump(mode="json", by_alias=True),
            "florence2": florence.model_dump(mode="json", by_alias=True),
            "saved_at": time.time(),
        }
        blobs = {
            ".jpg": jpg.tobytes(),
            ".txt": (labels + "\n").encode() if labels else b"",
            ".json": json.dumps(sidecar, indent=1).encode(),
        }
        size = sum(len(b) for b in blobs.values())
        if size > self.quota_bytes:
            raise CaptureError(
                f"one capture ({size} bytes) exceeds the quota ({self.quota_bytes} bytes)"
            )
        day_dir = self.root / yolo.camera / day
        with self._lock:
            day_dir.mkdir(parents=True, exist_ok=True)
            stem = day_dir / name
            for suffix in SUFFIXES:  # sidecar last: it marks the capture complete
                atomic_write(stem.with_suffix(suffix), blobs[suffix])
            cap = Capture(yolo.camera, day, stem, size)
            if self.pending:
                (self.root / PENDING / cap.ticket_name).touch()
            self._items.append(cap)
            self._total += size
            self._enforce()
        return cap

    def _enforce(self) -> None:
        while self._total > self.quota_bytes and len(self._items) > 1:
            old = self._items.popleft()
            self._total -= old.nbytes
            for p in old.files():
                p.unlink(missing_ok=True)
            ticket = self.root / PENDING / old.ticket_name
            if ticket.exists():
                ticket.unlink()
                self.dropped_unuploaded += 1
            self.dropped += 1
            log.warning(
                "capture quota: dropped oldest",
                stem=str(old.stem),
                quota=self.quota_bytes,
                uploaded=not ticket.exists(),
            )
            try:
                old.stem.parent.rmdir()
            except OSError:
                pass  # the day directory still holds captures

    # -- upload queue ----------------------------------------------------------------------
    def pending_tickets(self) -> list[Path]:
        """Upload tickets, oldest capture first."""
        return sorted((self.root / PENDING).iterdir(), key=lambda p: p.name.rsplit("@", 1)[-1])

    def ticket_capture(self, ticket: Path) -> tuple[str, Path] | None:
        """(camera, stem) of a ticket, or None (and the ticket removed) if its capture is gone."""
        try:
            camera, day, name = ticket.name.split("@")
        except ValueError:
            ticket.unlink(missing_ok=True)
            return None
        stem = self.root / camera / day / name
        if not stem.with_suffix(".json").exists():
            ticket.unlink(missing_ok=True)
            return None
        return camera, stem

    @staticmethod
    def done(ticket: Path) -> None:
        """The capture of `ticket` is uploaded: remove the ticket (the files stay, under quota)."""
        ticket.unlink(missing_ok=True)


def read_capture_image(path: Path) -> np.ndarray:
    """Decode a JPEG into (h, w, 3) uint8 BGR; raise CaptureError if it does not decode."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise CaptureError(f"{path}: not a decodable image")
    return image
