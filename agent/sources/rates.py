"""How many frames per second the cameras will ask the engine for: ONNX Runtime's `spin: auto`
weighs it against the engine's speed (`agent.engines.ort.spin_timed`).

A camera's rate is its `fps_cap`, else its source's: a paced file's fps (configured, or its
header's), a V4L2 camera's requested fps, else DEFAULT_CAMERA_FPS. A file decoded on demand
(`pace: false` or `every_frame: true`) asks for frames as fast as the engine runs: unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2

from agent.sources.config import CameraConfig, FileSourceConfig, SourceConfig, V4l2SourceConfig

DEFAULT_CAMERA_FPS = 30.0
"""The rate assumed for a camera that does not say (RTSP, GStreamer, a V4L2 camera without fps)."""


def header_fps(path: Path) -> float | None:
    """The fps in a video file's header; None when it cannot be read or is not positive."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if fps > 0 and math.isfinite(fps) else None


def source_fps(
    source: SourceConfig, file_fps: Callable[[Path], float | None] = header_fps
) -> float:
    """Frames per second `source` delivers (math.inf for a file decoded on demand)."""
    if isinstance(source, FileSourceConfig):
        if source.every_frame or not source.pace:
            return math.inf
        return source.fps or file_fps(source.path) or DEFAULT_CAMERA_FPS
    if isinstance(source, V4l2SourceConfig) and source.fps is not None:
        return source.fps
    return DEFAULT_CAMERA_FPS


def cameras_fps(
    cameras: Sequence[CameraConfig], file_fps: Callable[[Path], float | None] = header_fps
) -> float:
    """The cameras' combined rate (math.inf when one of them is unbounded)."""
    total = 0.0
    for cam in cameras:
        fps = source_fps(cam.source, file_fps)
        total += fps if cam.fps_cap is None else min(fps, cam.fps_cap)
    return total
