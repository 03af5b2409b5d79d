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

Pure checks live here (`safe_stem`, `check_labels`, `token_ok`); the HTTP handler is in
`agent.gateway.server`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from pathlib import Path

_STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
JPEG_MAGIC = b"\xff\xd8\xff"


class IntakeRejected(Exception):
    """An upload was refused; `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def token_ok(token: str | None, expected_sha256: str | None) -> bool:
    """Constant-time check of a bearer token against the configured SHA-256 of it."""
    if not token or expected_sha256 is None:
        return False
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return hmac.compare_digest(digest, expected_sha256)


def safe_stem(filename: str) -> str:
    """The file stem to store under, or IntakeRejected(400) for any path trick.

    Refused: separators ('/', '\\'), '..', a leading '.', NUL and other control characters,
    anything outside [A-Za-z0-9_.-], and names longer than 100 characters.
    """
    stem = filename[:-4] if filename.lower().endswith((".jpg", ".txt")) else filename
    stem = stem[:-5] if stem.lower().endswith((".jpeg", ".json")) else stem
    if ".." in filename or not _STEM_RE.fullmatch(stem):
        raise IntakeRejected(400, f"unsafe file name {filename!r}: use [A-Za-z0-9_.-], no '..'")
    return stem


def check_labels(data: bytes) -> None:
    """YOLO labels: UTF-8 lines of `class cx cy w h` (class an integer >= 0, the rest in 0..1)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IntakeRejected(400, "labels: not UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise IntakeRejected(400, f"labels line {n}: expected 'class cx cy w h'")
        try:
            cls = int(parts[0])
            vals = [float(p) for p in parts[1:]]
        except ValueError:
            raise IntakeRejected(400, f"labels line {n}: not numbers") from None
        if cls < 0 or not all(0.0 <= v <= 1.0 for v in vals):
            raise IntakeRejected(400, f"labels line {n}: class >= 0 and coordinates in 0..1")


def check_meta(data: bytes) -> None:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntakeRejected(400, "meta: not JSON") from None
    if not isinstance(value, dict):
        raise IntakeRejected(400, "meta: must be a JSON object")


def store_upload(day_dir: Path, stem: str, files: dict[str, bytes]) -> list[Path]:
    """Write `files` ({suffix: bytes}) as <day_dir>/<stem><suffix>, each via temp + rename.

    Refuses (409) to overwrite an earlier upload with the same stem: nothing is lost.
    """
    day_dir.mkdir(parents=True, exist_ok=True)
    targets = {suffix: day_dir / f"{stem}{suffix}" for suffix in files}
    clash = [p.name for p in targets.values() if p.exists()]
    if clash:
        raise IntakeRejected(409, f"already uploaded: {', '.join(clash)}")
    written: list[Path] = []
    for suffix, data in files.items():
        tmp = day_dir / f".{stem}{suffix}.part"
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, targets[suffix])
        written.append(targets[suffix])
    return written
