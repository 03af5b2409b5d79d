"""Config models of the frame sources, one per `type`, and of a camera (a source plus pacing,
stall timeout and reconnect backoff)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from agent.contracts.ids import SafeId
from agent.events.config import LineConfig, ZoneConfig, check_unique_ids
from agent.util.models import FrozenModel
from agent.util.validation import check_min_max

PASSWORD_PLACEHOLDER = "{password}"


class FileSourceConfig(FrozenModel):
    type: Literal["file"] = "file"
    path: Path
    """Video file readable by OpenCV (FFmpeg backend)."""
    loop: bool = True
    """Start again at the end of the file."""
    pace: bool = True
    """Deliver frames at the file's own fps; false: as fast as the inference loop takes them (the
    next frame is decoded only once the previous one was taken)."""
    every_frame: bool = False
    """Deliver every frame of the file, none dropped: the reader decodes frame n+1 only once the
    loop took frame n (paced or not). With loop: false on every camera, the daemon exits (code 0)
    once the last frame is published."""
    fps: float | None = Field(None, gt=0)
    """Override the file's fps for pacing (when its header is wrong)."""


class V4l2SourceConfig(FrozenModel):
    type: Literal["v4l2"] = "v4l2"
    device: Path = Path("/dev/video0")
    """V4L2 device node."""
    width: int | None = Field(None, gt=0)
    """Requested capture width."""
    height: int | None = Field(None, gt=0)
    """Requested capture height."""
    fps: float | None = Field(None, gt=0)
    """Requested capture fps."""
    fourcc: str | None = Field(None, min_length=4, max_length=4)
    """Requested pixel format, e.g. MJPG."""

    @field_validator("fourcc")
    @classmethod
    def _printable_fourcc(cls, value: str | None) -> str | None:
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ValueError(f"fourcc must be 4 printable ASCII characters, got {value!r}")
        return value


class RtspSourceConfig(FrozenModel):
    type: Literal["rtsp"] = "rtsp"
    url: str = Field(pattern=r"^rtsps?://")
    """rtsp:// or rtsps:// URL."""
    transport: Literal["tcp", "udp"] = "tcp"
    """RTP transport."""
    open_timeout_s: float = Field(10.0, gt=0)
    """Give up opening after this long."""
    read_timeout_s: float = Field(5.0, gt=0)
    """Give up on one read after this long."""
    password_env: str | None = None
    """Environment variable substituted for '{password}' in the URL."""

    @model_validator(mode="after")
    def _password_from_env_only(self) -> RtspSourceConfig:
        # Messages never echo the URL: it may hold a secret.
        try:
            parts = urlsplit(self.url)
        except ValueError:
            raise ValueError("url is not a valid URL") from None
        if not parts.hostname:
            raise ValueError("url has no host")
        has_placeholder = PASSWORD_PLACEHOLDER in self.url
        if self.password_env is not None and not has_placeholder:
            raise ValueError("password_env is set but the url has no '{password}' placeholder")
        if has_placeholder and self.password_env is None:
            raise ValueError("the url has a '{password}' placeholder but password_env is not set")
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo and userinfo.partition(":")[2] != PASSWORD_PLACEHOLDER:
            raise ValueError(
                "the url holds a literal password; write '{password}' in its place and name "
                "the environment variable that holds it in password_env"
            )
        return self


class GStreamerSourceConfig(FrozenModel):
    type: Literal["gstreamer"] = "gstreamer"
    pipeline: str
    """GStreamer pipeline ending in 'appsink' (needs OpenCV built with GStreamer)."""

    @field_validator("pipeline")
    @classmethod
    def _ends_in_appsink(cls, value: str) -> str:
        last = value.rsplit("!", 1)[-1].split()
        if not last or last[0] != "appsink":
            raise ValueError(
                "pipeline must end in an 'appsink' element (OpenCV pulls frames from it)"
            )
        return value


SourceConfig = Annotated[
    FileSourceConfig | V4l2SourceConfig | RtspSourceConfig | GStreamerSourceConfig,
    Field(discriminator="type"),
]


class CameraConfig(FrozenModel):
    id: SafeId
    """Camera id: one MQTT topic level."""
    source: SourceConfig
    """Where frames come from; chosen by `type`."""
    fps_cap: float | None = Field(None, gt=0)
    """Most frames per second this camera sends to inference."""
    stall_timeout_s: float = Field(5.0, gt=0)
    """A streaming camera with no new frame for this long is stalled."""
    backoff_min_s: float = Field(0.5, gt=0)
    """First reconnect delay after a failure."""
    backoff_max_s: float = Field(30.0, gt=0)
    """Longest reconnect delay."""
    zones: list[ZoneConfig] = Field(default_factory=list)
    """Zones of this camera (events and zone counts)."""
    lines: list[LineConfig] = Field(default_factory=list)
    """Counting lines of this camera (events, line counts)."""

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraConfig:
        check_min_max(self, "backoff_min_s", "backoff_max_s")
        return self

    @model_validator(mode="after")
    def _every_frame_is_not_capped(self) -> CameraConfig:
        if self.fps_cap is not None and getattr(self.source, "every_frame", False):
            raise ValueError(
                "fps_cap skips frames, every_frame delivers them all: set one or the other "
                "(to slow a file down, use source.pace with source.fps)"
            )
        return self

    @model_validator(mode="after")
    def _unique_zones_and_lines(self) -> CameraConfig:
        check_unique_ids(self.zones, self.lines)
        return self
