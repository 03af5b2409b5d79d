"""Config models of the frame sources, one per `type`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSourceConfig(_Strict):
    type: Literal["file"] = "file"
    path: Path = Field(description="Video file readable by OpenCV (FFmpeg backend).")
    loop: bool = Field(True, description="Start again at the end of the file.")
    pace: bool = Field(
        True, description="Deliver frames at the file's own fps; false: as fast as decoded."
    )
    fps: float | None = Field(
        None, gt=0, description="Override the file's fps for pacing (when its header is wrong)."
    )


class V4l2SourceConfig(_Strict):
    type: Literal["v4l2"] = "v4l2"
    device: Path = Field(Path("/dev/video0"), description="V4L2 device node.")
    width: int | None = Field(None, gt=0, description="Requested capture width.")
    height: int | None = Field(None, gt=0, description="Requested capture height.")
    fps: float | None = Field(None, gt=0, description="Requested capture fps.")
    fourcc: str | None = Field(
        None, min_length=4, max_length=4, description="Requested pixel format, e.g. MJPG."
    )


class RtspSourceConfig(_Strict):
    type: Literal["rtsp"] = "rtsp"
    url: str = Field(pattern=r"^rtsps?://", description="rtsp:// or rtsps:// URL.")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTP transport.")
    open_timeout_s: float = Field(10.0, gt=0, description="Give up opening after this long.")
    read_timeout_s: float = Field(5.0, gt=0, description="Give up on one read after this long.")
    password_env: str | None = Field(
        None, description="Environment variable substituted for '{password}' in the URL."
    )


class GStreamerSourceConfig(_Strict):
    type: Literal["gstreamer"] = "gstreamer"
    pipeline: str = Field(
        description="GStreamer pipeline ending in 'appsink' (needs OpenCV built with GStreamer)."
    )


SourceConfig = Annotated[
    FileSourceConfig | V4l2SourceConfig | RtspSourceConfig | GStreamerSourceConfig,
    Field(discriminator="type"),
]
