"""The cameras' combined rate that ONNX Runtime's spin: auto weighs against the engine."""

from __future__ import annotations

import math
from pathlib import Path

from agent.sources.config import CameraConfig
from agent.sources.rates import DEFAULT_CAMERA_FPS, cameras_fps, header_fps


def cam(source: dict[str, object], **kw: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": "c", "source": source, **kw})


def test_rates_add_up_per_camera_with_caps_and_defaults(clips: dict[str, Path]) -> None:
    """A paced file at its header's fps (25), a V4L2 camera at its fps, an RTSP camera at the
    default, a cap below the source's rate: 25 + 15 + 30 + 5."""
    cameras = [
        cam({"type": "file", "path": str(clips["paced"])}),
        cam({"type": "v4l2", "fps": 15}),
        cam({"type": "rtsp", "url": "rtsp://cam/stream"}),
        cam({"type": "file", "path": str(clips["paced"]), "fps": 50}, fps_cap=5),
    ]
    assert header_fps(clips["paced"]) == 25.0
    assert cameras_fps(cameras) == 25 + 15 + DEFAULT_CAMERA_FPS + 5


def test_a_file_decoded_on_demand_is_unbounded(clips: dict[str, Path]) -> None:
    """pace: false or every_frame asks for frames as fast as the engine runs; a missing file's
    header cannot be read, so its rate is the default."""
    for extra in ({"pace": False}, {"every_frame": True}):
        assert math.isinf(cameras_fps([cam({"type": "file", "path": "x.mp4", **extra})]))
    assert header_fps(Path("/nonexistent.mp4")) is None
    assert cameras_fps([cam({"type": "file", "path": "/nonexistent.mp4"})]) == DEFAULT_CAMERA_FPS
