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


def test_the_daemon_hands_the_cameras_rate_to_spin_auto(tmp_path: Path) -> None:
    """`edge-agent run`'s detector loader fills expected_fps from the cameras: the demo clip
    paced at its 10 fps is timed against the warm run; an every_frame file is unbounded."""
    from structlog.testing import capture_logs

    from agent.config import AgentConfig
    from agent.daemon import load_configured_detector
    from tests.helpers.daemon import DEMO_CLIP, DEMO_MODEL, demo_config

    reasons = []
    for extra in ({}, {"every_frame": True, "pace": False}):
        cfg = demo_config(tmp_path, 1883)
        cfg["model"]["engine"] = {"type": "onnxruntime", "threads": 2}
        cfg["cameras"][0]["source"] = {"type": "file", "path": str(DEMO_CLIP), **extra}
        with capture_logs() as logs:
            load_configured_detector(AgentConfig.model_validate(cfg), DEMO_MODEL, None).close()
        loaded = next(e for e in logs if e["event"] == "onnxruntime model loaded")
        reasons.append(loaded["spin_reason"])
    assert reasons[0].startswith("10 fps x "), reasons
    assert reasons[1] == "frames are asked for as fast as the engine runs", reasons
