"""The tracker behind our own small interface: `update(camera, detections)` -> one track id
(or None) per detection, in the detections' order; `reset(camera)`.

Two implementations (`tracking.implementation`, built by `agent.tracking.build.make_tracker`):
our own ByteTrack (`agent.tracking.bytetrack.BuiltinTracker`, the default) and `ByteTracker`
here, which adapts `trackers.ByteTrackTracker` (Apache-2.0; imported on first use, so a daemon
that does not select it never loads it). One tracker per camera. Ids are ours: they grow per
camera for the whole boot and never restart, also after a `reset` (model swap), so an event id
(boot, camera, track) is never reused.

Both step once per processed frame (the library in its fixed-rate mode, no timestamps): with
the newest-frame policy dropping frames under load, its timestamp mode switched ids far more
often on the demo clip (a person kept one id on 26-56 % of frames with 30 % of frames
dropped, against 82-89 % in fixed-rate mode), so `lost_track_frames` counts processed frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from agent.tracking.config import TrackingConfig
from agent.types import Detections

if TYPE_CHECKING:
    from trackers import ByteTrackTracker

REFERENCE_FPS = 30.0
"""`trackers` scales its lost-track buffer by frame_rate / 30: at 30 it is taken as it is."""


class TrackerMissing(RuntimeError):
    """The tracker's package is not installed."""


class Tracker(Protocol):
    """What the pipeline's tracking stage needs from a multi-object tracker."""

    def update(self, camera: str, detections: Detections) -> list[int | None]:
        """Track ids for `detections` of the next frame of `camera` (frames in order); None
        for a box not (yet) on a confirmed track."""
        ...

    def reset(self, camera: str) -> None:
        """Forget every track of `camera` (new ids follow; old ones are never reused)."""
        ...


@dataclass
class _CameraTracks:
    tracker: Any
    ids: dict[int, int] = field(default_factory=dict)  # the library's id -> ours


class ByteTracker:
    """`Tracker` on `trackers.ByteTrackTracker`, one instance per camera."""

    def __init__(self, cfg: TrackingConfig) -> None:
        try:  # fail at start, not on the first frame
            import supervision as sv  # noqa: F401
            import trackers  # noqa: F401
        except ImportError as err:
            raise TrackerMissing(
                f"tracking.enabled needs the `trackers` package ({err}); install it with "
                "scripts/install-tracking.sh (docs/events.md)"
            ) from err

        self._cfg = cfg
        self._cameras: dict[str, _CameraTracks] = {}
        self._next_id: dict[str, int] = {}

    def _new_tracker(self) -> ByteTrackTracker:
        from trackers import ByteTrackTracker

        c = self._cfg
        return ByteTrackTracker(
            lost_track_buffer=c.lost_track_frames,
            frame_rate=REFERENCE_FPS,
            track_activation_threshold=c.activation_threshold,
            minimum_consecutive_frames=c.min_hits,
            minimum_iou_threshold=c.min_iou,
            high_conf_det_threshold=c.high_threshold,
        )

    def update(self, camera: str, detections: Detections) -> list[int | None]:
        import supervision as sv

        cam = self._cameras.get(camera)
        if cam is None:
            cam = self._cameras[camera] = _CameraTracks(self._new_tracker())
        n = len(detections)
        conf = np.nan_to_num(detections.confidence, nan=1.0)
        sv_dets = sv.Detections(
            xyxy=detections.xyxy.astype(np.float32, copy=False),
            confidence=conf,
            class_id=detections.class_id,
            data={"index": np.arange(n)},
        )
        out = cam.tracker.update(sv_dets)
        ids: list[int | None] = [None] * n
        if len(out) == 0:  # an empty result carries no `data` columns at all
            return ids
        for index, lib_id in zip(out.data["index"].tolist(), out.tracker_id.tolist(), strict=True):
            if lib_id >= 0:
                ids[index] = self._ours(camera, cam, lib_id)
        return ids

    def _ours(self, camera: str, cam: _CameraTracks, lib_id: int) -> int:
        ours = cam.ids.get(lib_id)
        if ours is None:
            ours = self._next_id.get(camera, 0)
            self._next_id[camera] = ours + 1
            cam.ids[lib_id] = ours
        return ours

    def reset(self, camera: str) -> None:
        self._cameras.pop(camera, None)
