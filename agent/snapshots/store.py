"""Snapshot JPEG files under `<state_dir>/snapshots/<camera>/`, within a byte quota.

Each event has two files, `<event_id>.jpg` (full frame, box drawn) and `<event_id>.crop.jpg`,
written atomically (agent.util.files); a better frame replaces them in place. When the files
exceed the quota, whole events go, oldest first (by the time they were last written). Files
already there at start count towards the quota; temp files an interrupted write left behind
are removed.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.contracts.ids import check_id
from agent.snapshots.choice import plan_eviction
from agent.util.files import atomic_write, is_temp_leftover

log = structlog.get_logger(__name__)

DIR = "snapshots"
FULL = ".jpg"
CROP = ".crop.jpg"


@dataclass(frozen=True)
class Saved:
    """Where an event's snapshot went: `path` is relative to the state dir."""

    path: str
    full: Path
    crop: Path
    bytes: int


class SnapshotStore:
    """The snapshot files of this device; thread-safe."""

    def __init__(self, state_dir: Path, quota_bytes: int) -> None:
        self._state_dir = state_dir
        self._root = state_dir / DIR
        self._quota = quota_bytes
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}  # "<camera>/<event_id>" -> bytes, oldest first
        self.evicted = 0
        self._root.mkdir(parents=True, exist_ok=True)
        self._scan()

    def _scan(self) -> None:
        found: list[tuple[float, str, int]] = []
        for path in self._root.glob("*/*"):
            if is_temp_leftover(path):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if path.name.endswith(CROP) or not path.name.endswith(FULL):
                continue
            key = f"{path.parent.name}/{path.name[: -len(FULL)]}"
            st = path.stat()
            crop = path.with_name(path.name[: -len(FULL)] + CROP)
            size = st.st_size + (crop.stat().st_size if crop.exists() else 0)
            found.append((st.st_mtime, key, size))
        for _mtime, key, size in sorted(found):
            self._sizes[key] = size
        self._evict(keep=set())

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def paths(self, camera: str, event_id: str) -> tuple[Path, Path]:
        """The full-frame and crop files of an event."""
        check_id(camera, "camera id")
        if "/" in event_id or event_id.startswith("."):
            raise ValueError(f"bad event id for a file name: {event_id!r}")
        folder = self._root / camera
        return folder / f"{event_id}{FULL}", folder / f"{event_id}{CROP}"

    def relative(self, path: Path) -> str:
        """`path` relative to the state dir, as events name it."""
        return path.relative_to(self._state_dir).as_posix()

    def save(self, camera: str, event_id: str, full: bytes, crop: bytes) -> Saved:
        """Write (or replace) an event's two files durably, then apply the quota."""
        full_path, crop_path = self.paths(camera, event_id)
        full_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(crop_path, crop, mode=0o640)
        atomic_write(full_path, full, mode=0o640)  # last: its presence means both are complete
        key = f"{camera}/{event_id}"
        with self._lock:
            self._sizes.pop(key, None)
            self._sizes[key] = len(full) + len(crop)  # now the newest
            self._evict(keep={key})
        return Saved(self.relative(full_path), full_path, crop_path, len(full) + len(crop))

    def _evict(self, keep: set[str]) -> None:
        for key in plan_eviction(list(self._sizes.items()), self._quota, keep):
            camera, event_id = key.split("/", 1)
            for path in self.paths(camera, event_id):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            del self._sizes[key]
            self.evicted += 1
            log.info("snapshot evicted for the quota", camera=camera, event_id=event_id)
