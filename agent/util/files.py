"""File helpers with the strongest guarantee we need anywhere: durable, atomic, no leftovers."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20
TMP_MARK = ".tmp-"
"""Temp files are named `.<name>.tmp-<pid>` beside their target; `is_temp_leftover` finds them."""


def file_sha256(path: Path | str, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file's bytes, read in `chunk`-sized blocks (OSError propagates)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(paths: Iterable[Path | str], chunk: int = CHUNK) -> str:
    """One hex SHA-256 over the bytes of several files, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path | str) -> None:
    """fsync a directory so a rename or create inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """The temp file `atomic_write` uses for `path` (same directory, so rename is atomic)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def is_temp_leftover(path: Path) -> bool:
    """True for a temp file an interrupted `atomic_write` left behind."""
    return path.name.startswith(".") and TMP_MARK in path.name


def atomic_write(
    path: Path | str, data: bytes, mode: int | None = None, *, durable: bool = True
) -> None:
    """Replace `path` with `data` durably: temp file beside it, fsync, rename, fsync the folder.

    A reader sees the old content or the new one, never a mix; after a crash at any point the
    target holds one of the two. The temp file is removed when anything fails. `mode` sets the
    permission bits before the rename (e.g. 0o600 for secrets). `durable=False` skips both
    fsyncs: still all-or-nothing for readers and across a crash of the process (kill -9), but a
    power cut may leave the previous content; for small state rewritten on a hot path.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str, mode: int | None = None) -> None:
    """`atomic_write` of UTF-8 text."""
    atomic_write(path, text.encode("utf-8"), mode)
