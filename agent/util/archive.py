"""Multi-file model artifacts (a Florence-2 directory) as one uncompressed tar: pack, check, unpack.

BRIEF §4: a multi-file artifact is one archive with one sha256 and length. The archive is
plain (uncompressed) POSIX tar so that its content can never be larger than the signed
`length`: no decompression bomb. Packing is deterministic (sorted names, mtime 0, uid/gid 0,
mode 0644/0755), so the same directory always gives the same bytes and the same sha256.

Unpacking treats the archive as untrusted input even when signed: only regular files and
directories, relative names of safe components (no `..`, no absolute path, no backslash, no
empty or dot component), no links or devices, no duplicates, a member count cap, and a byte cap
counted on the bytes actually written (never on the headers' sizes). It writes into a fresh
temporary directory beside the destination and renames it into place only when every member
passed, so a refused archive leaves nothing behind. Standard library only: the gateway inspects
archives with the same rules.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.util.files import TMP_MARK, fsync_dir

MAX_MEMBERS = 10_000
"""Most entries an archive may hold."""

_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$")
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """The archive is not a safe model archive; the message says which member and why."""


@dataclass(frozen=True)
class Entry:
    """One checked archive member."""

    name: str
    is_dir: bool
    size: int


def check_name(name: str) -> str:
    """The member name normalised (no trailing '/'), or ArchiveError when it is unsafe."""
    if not name or "\\" in name or "\x00" in name:
        raise ArchiveError(f"member {name!r}: empty name, backslash or NUL")
    if name.startswith("/"):
        raise ArchiveError(f"member {name!r}: absolute path")
    parts = PurePosixPath(name.rstrip("/")).parts
    if not parts:
        raise ArchiveError(f"member {name!r}: empty path")
    for part in parts:
        if part == "..":
            raise ArchiveError(f"member {name!r}: '..' climbs out of the model directory")
        if not _COMPONENT.match(part):
            raise ArchiveError(f"member {name!r}: component {part!r} is not a plain file name")
    return "/".join(parts)


def check_member(member: tarfile.TarInfo) -> Entry:
    """An Entry for a regular file or directory with a safe name; ArchiveError otherwise."""
    name = check_name(member.name)
    if member.issym() or member.islnk():
        raise ArchiveError(f"member {name!r}: links are not allowed (-> {member.linkname!r})")
    if member.isdir():
        return Entry(name, True, 0)
    if not member.isreg():
        raise ArchiveError(f"member {name!r}: not a regular file or directory")
    return Entry(name, False, member.size)


def list_archive(path: Path, max_members: int = MAX_MEMBERS) -> list[Entry]:
    """Check every member of the tar at `path` (no extraction); ArchiveError when unsafe."""
    entries: list[Entry] = []
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                entry = check_member(member)
                if entry.name in seen:
                    raise ArchiveError(f"member {entry.name!r} appears twice")
                seen.add(entry.name)
                entries.append(entry)
                if len(entries) > max_members:
                    raise ArchiveError(f"more than {max_members} members")
    except tarfile.TarError as err:
        raise ArchiveError(f"not an uncompressed tar archive: {err}") from None
    if not any(not e.is_dir for e in entries):
        raise ArchiveError("the archive holds no file")
    return entries


def _copy_capped(src: io.BufferedIOBase, dest: Path, budget: int, name: str) -> int:
    """Copy `src` to `dest`, refusing once more than `budget` bytes came; return bytes written."""
    written = 0
    with dest.open("xb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise ArchiveError(f"member {name!r}: unpacking exceeds the size cap")
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return written


def unpack(archive: Path, dest: Path, max_bytes: int, max_members: int = MAX_MEMBERS) -> int:
    """Unpack the checked `archive` into `dest` (which must not exist); return bytes written.

    Raises ArchiveError (nothing is left behind) when a member is unsafe or the content
    exceeds `max_bytes`.
    """
    if dest.exists():
        raise ArchiveError(f"{dest} exists already")
    list_archive(archive, max_members)  # every name and type checked before anything is written
    tmp = dest.with_name(f".{dest.name}{TMP_MARK}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total = 0
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                entry = check_member(member)
                target = tmp / entry.name
                if entry.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:
                    raise ArchiveError(f"member {entry.name!r} cannot be read")
                total += _copy_capped(src, target, max_bytes - total, entry.name)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return total


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.size = path.stat().st_size
    info.mode = 0o644
    with path.open("rb") as f:
        tar.addfile(info, f)


def pack(src: Path, out: Path) -> int:
    """Pack the directory `src` into a deterministic tar at `out`; return its length.

    Refuses links, special files and unsafe names (the device would refuse them too).
    """
    if not src.is_dir():
        raise ArchiveError(f"{src} is not a directory")
    paths = sorted(p for p in src.rglob("*"))
    for p in paths:
        rel = p.relative_to(src).as_posix()
        check_name(rel)
        if p.is_symlink() or not (p.is_dir() or p.is_file()):
            raise ArchiveError(f"{p}: links and special files cannot be packed")
    tmp = out.with_name(f".{out.name}{TMP_MARK}{os.getpid()}")
    try:
        with tarfile.open(tmp, mode="w:", format=tarfile.PAX_FORMAT) as tar:
            for p in paths:
                _add(tar, p, p.relative_to(src).as_posix())
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out.stat().st_size


def tree_sha256(root: Path) -> str:
    """One digest of a directory's files: sha256 over sorted `relative-path NUL sha256 LF`."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            digest = hashlib.sha256()
            with p.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            h.update(f"{p.relative_to(root).as_posix()}\0{digest.hexdigest()}\n".encode())
    return h.hexdigest()
