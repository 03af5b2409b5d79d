"""Camera-wide object counts from the event stream (pure): a `new` adds one to its camera and
label, its `end` takes it away. Published retained on `edge/<device>/cameras/<camera>/objects/
<label>` for Home Assistant's per-camera occupancy and count entities."""

from __future__ import annotations


class ObjectCounts:
    """Open events per (camera, label)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], set[int]] = {}

    def new(self, camera: str, label: str, track_id: int) -> int:
        """An event started; the camera's new count of `label`."""
        ids = self._open.setdefault((camera, label), set())
        ids.add(track_id)
        return len(ids)

    def end(self, camera: str, label: str, track_id: int) -> int:
        """An event ended; the camera's new count of `label` (never below 0)."""
        ids = self._open.setdefault((camera, label), set())
        ids.discard(track_id)
        return len(ids)

    def count(self, camera: str, label: str) -> int:
        return len(self._open.get((camera, label), ()))
