"""Identity of a dataset folder: per-file sha256 and the gate set's one digest.

The gate set (the held-out split beside a dataset built by `edge-gateway dataset build`,
folder `gate/`) is identified by `gate_digest` of its files:

    sha256( for each file, sorted by its relative POSIX path:
                "<sha256 hex of the file>  <relative path>\\n" )

over every regular file under the gate folder except its own manifest (`gate.json`) and
hidden files; i.e. `images/*`, `labels/*` and `data.yaml`. Paths are part of the digest, so a
renamed or moved file changes it. `gate_set_sha256(dir)` computes it from disk; the digest is
written into `gate.json` and `dataset.json`, and `edge-gateway models sign --gate-data DIR`
puts it into the signed manifest so that two models' figures are only compared on the same set.
Standard library only: importable without OpenCV, numpy or torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from agent.util.files import file_sha256

GATE_MANIFEST = "gate.json"
"""The gate set's own manifest; not part of its digest."""


def gate_digest(file_digests: Mapping[str, str]) -> str:
    """The one digest of a set of files: `{relative POSIX path: sha256 hex}` -> sha256 hex.

    Raises:
        ValueError: a path that is absolute, has '..', or a digest that is not 64 hex digits.
    """
    h = hashlib.sha256()
    for rel in sorted(file_digests):
        digest = file_digests[rel]
        if rel.startswith("/") or ".." in rel.split("/") or "\n" in rel:
            raise ValueError(f"bad relative path {rel!r}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"bad sha256 {digest!r} for {rel}")
        h.update(f"{digest}  {rel}\n".encode())
    return h.hexdigest()


def tree_digests(root: Path, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """`{relative POSIX path: sha256}` of every regular file under `root` (hidden files and
    folders, and the relative paths in `exclude`, left out). Symlinks are refused.

    Raises:
        ValueError: `root` holds a symbolic link.
        OSError: a file cannot be read.
    """
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or rel in exclude:
            continue
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; a dataset holds regular files only")
        if path.is_file():
            out[rel] = file_sha256(path)
    return out


def gate_set_sha256(gate_dir: Path) -> str:
    """The gate digest (see the module docstring) of the gate folder `gate_dir`.

    Raises:
        FileNotFoundError: `gate_dir` is not a folder.
        ValueError: it holds a symbolic link.
    """
    if not gate_dir.is_dir():
        raise FileNotFoundError(f"gate set {gate_dir} is not a folder")
    return gate_digest(tree_digests(gate_dir, frozenset({GATE_MANIFEST})))
