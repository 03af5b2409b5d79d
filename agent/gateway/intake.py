"""Dataset intake: hard frames uploaded by devices, stored per device, camera and day.

Request (documented in docs/gateway.md):
    POST /v1/intake/<device>/<camera>
    Authorization: Bearer <the device's intake token>
    Content-Type: multipart/form-data with parts
        image   (required) a JPEG file; its file name gives the stem, e.g. "000123.jpg"
        labels  (optional) YOLO label text: "class cx cy w h" per line, normalised to 0..1
        meta    (optional) a JSON object (sidecar: model, seq, timestamps, reasons)
        name    (optional) text field overriding the stem
Stored as <data>/intake/<device>/<camera>/<YYYY-MM-DD UTC>/<stem>.{jpg,txt,json}.

Pure checks live here (`safe_stem`, `check_labels`, `check_meta`) with the writer
(`store_upload`); refusals carry an `IntakeRefusal` reason (mapped to an HTTP status in
`agent.gateway.api.errors`). The HTTP handler is `agent.gateway.api.intake`.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path

from agent.util.errors import Refused
from agent.util.files import atomic_write
from agent.util.labels import parse_box_line

_STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
JPEG_MAGIC = b"\xff\xd8\xff"


class IntakeRefusal(str, Enum):
    """Why an upload was refused."""

    BAD_ID = "bad_id"  # device or camera id breaks the id rule
    UNAUTHORIZED = "unauthorized"  # not the enrolled device's own token
    NOT_MULTIPART = "not_multipart"
    TOO_LARGE = "too_large"  # above intake.max_bytes
    BAD_BODY = "bad_body"  # multipart that does not parse, unknown or missing parts
    UNSAFE_NAME = "unsafe_name"
    NOT_JPEG = "not_jpeg"
    BAD_LABELS = "bad_labels"
    BAD_META = "bad_meta"
    DUPLICATE = "duplicate"  # the same stem was uploaded before
    QUOTA_EXCEEDED = "quota_exceeded"  # the device's bytes or files of the day
    DISK_FLOOR = "disk_floor"  # storing would go below intake.min_free_bytes


class IntakeRejected(Refused[IntakeRefusal]):
    """An upload was refused; `reason` says why, the message in words."""


def safe_stem(filename: str) -> str:
    """The file stem to store under, or IntakeRejected(400) for any path trick.

    Refused: separators ('/', '\\'), '..', a leading '.', NUL and other control characters,
    anything outside [A-Za-z0-9_.-], and names longer than 100 characters.
    """
    stem = filename[:-4] if filename.lower().endswith((".jpg", ".txt")) else filename
    stem = stem[:-5] if stem.lower().endswith((".jpeg", ".json")) else stem
    if ".." in filename or not _STEM_RE.fullmatch(stem):
        raise IntakeRejected(
            IntakeRefusal.UNSAFE_NAME, f"unsafe file name {filename!r}: use [A-Za-z0-9_.-], no '..'"
        )
    return stem


def check_labels(data: bytes) -> None:
    """YOLO labels: UTF-8 lines of `class cx cy w h` (class an integer >= 0, the rest in 0..1)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IntakeRejected(IntakeRefusal.BAD_LABELS, "labels: not UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cls, *vals = parse_box_line(line)
        except ValueError as err:
            raise IntakeRejected(IntakeRefusal.BAD_LABELS, f"labels line {n}: {err}") from None
        if cls < 0 or not all(0.0 <= v <= 1.0 for v in vals):
            raise IntakeRejected(
                IntakeRefusal.BAD_LABELS, f"labels line {n}: class >= 0 and coordinates in 0..1"
            )


def check_meta(data: bytes) -> None:
    """The sidecar: a JSON object."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntakeRejected(IntakeRefusal.BAD_META, "meta: not JSON") from None
    if not isinstance(value, dict):
        raise IntakeRejected(IntakeRefusal.BAD_META, "meta: must be a JSON object")


def store_upload(day_dir: Path, stem: str, files: dict[str, bytes]) -> list[Path]:
    """Write `files` ({suffix: bytes}) as <day_dir>/<stem><suffix>, each via temp + rename.

    Refuses (`duplicate`) to overwrite an earlier upload with the same stem: nothing is lost.
    """
    day_dir.mkdir(parents=True, exist_ok=True)
    targets = {suffix: day_dir / f"{stem}{suffix}" for suffix in files}
    clash = [p.name for p in targets.values() if p.exists()]
    if clash:
        raise IntakeRejected(IntakeRefusal.DUPLICATE, f"already uploaded: {', '.join(clash)}")
    for suffix, data in files.items():
        atomic_write(targets[suffix], data, mode=0o644)
    return list(targets.values())
