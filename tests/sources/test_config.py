"""Source and camera config validation: bad values are refused with a clear message."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from agent.config import CameraConfig
from agent.sources.config import (
    FileSourceConfig,
    GStreamerSourceConfig,
    RtspSourceConfig,
    SourceConfig,
    V4l2SourceConfig,
)

SOURCE = TypeAdapter(SourceConfig)


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ({"type": "file", "path": "clip.mp4"}, FileSourceConfig),  # file
        ({"type": "v4l2", "device": "/dev/video2", "fourcc": "MJPG"}, V4l2SourceConfig),  # usb cam
        ({"type": "rtsp", "url": "rtsp://cam.local/stream"}, RtspSourceConfig),  # no credentials
        (
            {"type": "rtsp", "url": "rtsp://admin:{password}@cam/s", "password_env": "CAM_PW"},
            RtspSourceConfig,
        ),  # password from the environment
        ({"type": "gstreamer", "pipeline": "videotestsrc ! appsink drop=1"}, GStreamerSourceConfig),
    ],
)
def test_valid_sources_parse_by_type(data: dict[str, Any], cls: type) -> None:
    """Each source type is chosen by its `type` discriminator."""
    assert isinstance(SOURCE.validate_python(data), cls)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "file", "path": "a.mp4", "fps": 0}, "greater than 0"),  # zero fps
        ({"type": "file", "path": "a.mp4", "fps": -5}, "greater than 0"),  # negative fps
        ({"type": "file", "path": "a.mp4", "pace": "sometimes"}, "valid boolean"),  # bad pace
        ({"type": "file", "path": "a.mp4", "speed": 2}, "Extra inputs"),  # unknown key
        ({"type": "v4l2", "fps": 0}, "greater than 0"),  # zero capture fps
        ({"type": "v4l2", "width": -640}, "greater than 0"),  # negative width
        ({"type": "v4l2", "fourcc": "MJ\tG"}, "printable"),  # control character in fourcc
        ({"type": "v4l2", "fourcc": "MJPEG"}, "at most 4"),  # fourcc too long
        ({"type": "rtsp", "url": "http://cam/stream"}, "pattern"),  # not rtsp
        ({"type": "rtsp", "url": "rtsp:///stream"}, "no host"),  # no host
        (
            {"type": "rtsp", "url": "rtsp://admin:hunter2@cam/s"},
            "literal password",
        ),  # secret in yaml
        ({"type": "rtsp", "url": "rtsp://a:{password}@cam/s"}, "password_env is not set"),
        ({"type": "rtsp", "url": "rtsp://cam/s", "password_env": "PW"}, "no '{password}'"),
        ({"type": "rtsp", "url": "rtsp://cam/s", "open_timeout_s": 0}, "greater than 0"),
        ({"type": "rtsp", "url": "rtsp://cam/s", "read_timeout_s": -1}, "greater than 0"),
        ({"type": "rtsp", "url": "rtsp://cam/s", "transport": "http"}, "'tcp' or 'udp'"),
        ({"type": "gstreamer", "pipeline": "videotestsrc ! autovideosink"}, "appsink"),  # no sink
        ({"type": "ndi", "name": "x"}, "does not match any of the expected tags"),  # unknown type
    ],
)
def test_invalid_sources_are_refused(data: dict[str, Any], message: str) -> None:
    """A bad source config fails validation with a message that says what is wrong."""
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        SOURCE.validate_python(data)


def test_literal_password_never_appears_in_the_error_message() -> None:
    """The refusal of a literal RTSP password does not echo it in the error messages."""
    with pytest.raises(ValidationError) as info:
        SOURCE.validate_python({"type": "rtsp", "url": "rtsp://admin:hunter2@cam/s"})
    assert all("hunter2" not in e["msg"] for e in info.value.errors())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fps_cap", 0),  # zero fps cap
        ("fps_cap", -1.0),  # negative fps cap
        ("stall_timeout_s", 0),  # stall check that always fires
        ("backoff_min_s", 0),  # reconnect storm
        ("backoff_max_s", -2),  # negative backoff
    ],
)
def test_camera_refuses_non_positive_rates_and_timeouts(field: str, value: float) -> None:
    """Camera-level fps cap, stall timeout and backoff bounds must be positive."""
    with pytest.raises(ValidationError, match=field):
        CameraConfig.model_validate(
            {"id": "cam1", "source": {"type": "file", "path": "a.mp4"}, field: value}
        )


def test_every_frame_refuses_an_fps_cap() -> None:
    """fps_cap skips frames and every_frame promises them all: the config says to pick one."""
    with pytest.raises(ValidationError, match="fps_cap skips frames"):
        CameraConfig.model_validate(
            {
                "id": "c",
                "fps_cap": 5,
                "source": {"type": "file", "path": "a.mp4", "every_frame": True},
            }
        )
    cam = CameraConfig.model_validate(
        {"id": "c", "source": {"type": "file", "path": "a.mp4", "every_frame": True}}
    )
    assert cam.source.type == "file" and cam.source.every_frame
