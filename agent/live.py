"""The part of the config the inference loop reads at every frame, replaced whole on reload.

The daemon builds a `LiveConfig` from the running config and puts it in a `LiveConfigBox`;
the pipeline calls `box.get()` before each frame, so a reload takes effect between two frames
without any lock on the hot path (one reference read). Per-camera settings that are not the
reader's (zones and lines, when they exist) are looked up here by camera id; a camera that is
no longer configured gives None (its tracks and events end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from agent.engines.yolo import DecodeParams
from agent.sources.config import CameraConfig

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.engines.detector import Detector


@dataclass(frozen=True)
class LiveConfig:
    """Thresholds and per-camera configs in force for the next frame.

    Attributes:
        decode: the detector's post-processing thresholds.
        cameras: camera id -> its config.
    """

    decode: DecodeParams
    cameras: Mapping[str, CameraConfig] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: AgentConfig) -> LiveConfig:
        """The live part of a validated agent config."""
        m = cfg.model
        return cls(
            decode=DecodeParams(m.conf_threshold, m.iou_threshold, m.max_detections),
            cameras=MappingProxyType({c.id: c for c in cfg.cameras}),
        )

    def camera(self, camera_id: str) -> CameraConfig | None:
        """The config of `camera_id`, or None once it was removed."""
        return self.cameras.get(camera_id)


class LiveConfigBox:
    """Holds the current LiveConfig; `set` from the reloading thread, `get` from the loop."""

    def __init__(self, initial: LiveConfig) -> None:
        self._current = initial

    def get(self) -> LiveConfig:
        """The config for the next frame (a plain reference read: atomic, never blocks)."""
        return self._current

    def set(self, new: LiveConfig) -> None:
        """Install `new`; the loop picks it up at its next frame."""
        self._current = new


def apply_thresholds(detector: Detector, live: LiveConfig) -> None:
    """Give `detector` the live thresholds (inference thread, between two frames)."""
    if detector.params != live.decode:
        detector.params = live.decode
