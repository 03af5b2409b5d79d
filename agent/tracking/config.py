"""The `tracking:` section of the agent config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.util.models import FrozenModel


class TrackingConfig(FrozenModel):
    enabled: bool = False
    """Track objects per camera (ByteTrack): every YOLO detection gets a `track_id`."""
    implementation: Literal["builtin", "trackers"] = "builtin"
    """`builtin`: our ByteTrack (numpy and scipy, agent/tracking/bytetrack.py); `trackers`: the
    ByteTrack of Roboflow's `trackers` package through an adapter (needs the package:
    scripts/install-tracking.sh). Same algorithm and settings, the same ids on the benchmark scenes
    (with `min_hits` 1 `trackers` gives the id on the second box, builtin on the first); builtin
    costs a fraction per frame (docs/benchmarks.md)."""
    lost_track_frames: int = Field(20, ge=1, le=1000)
    """Keep a track that is not detected for this many processed frames of its camera (then its id
    is gone; a later box gets a new one)."""
    min_hits: int = Field(3, ge=1, le=30)
    """Consecutive detections before a track gets an id."""
    activation_threshold: float = Field(0.35, ge=0, le=1)
    """Lowest score that may start a new track."""
    high_threshold: float = Field(0.5, ge=0, le=1)
    """Boxes at or above this score are matched first; the ones below it only keep existing tracks
    alive (ByteTrack's second stage)."""
    min_iou: float = Field(0.1, ge=0, le=1)
    """Lowest IoU between a track's prediction and a box to match."""
    stationary_s: float = Field(10.0, gt=0)
    """A track whose reference point stays within `stationary_px` for this long is stationary
    (events: `stationary: true`; a parked car makes no updates)."""
    stationary_px: float = Field(10.0, gt=0)
    """Movement below this many pixels counts as standing still."""
