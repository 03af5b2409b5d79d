"""Opening OpenCV captures for each source type, behind one narrow `FrameSource` interface.

A `FrameSource` is owned by exactly one reader thread: `open()` then `read()` in a loop,
then `close()`. Calls may block (OpenCV has no cancellable read); the reader, not the
source, deals with hangs. Tests inject a fake `FrameSource` only for hardware we do not
have (V4L2 device nodes); files, RTSP and GStreamer are exercised for real.

Secrets: an RTSP password comes from an environment variable and is substituted for
`{password}` in the URL at open time. Only `redact_url()` forms of URLs are logged or put
into error messages.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote, urlsplit, urlunsplit

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from agent.sources.config import (
    FileSourceConfig,
    GStreamerSourceConfig,
    RtspSourceConfig,
    SourceConfig,
    V4l2SourceConfig,
)
from agent.sources.ffmpeg_options import OptionsBusyError, OptionsGate

log = structlog.get_logger(__name__)

Image = npt.NDArray[np.uint8]
"""(h, w, 3) uint8 BGR pixels."""

# OpenCV reads OPENCV_FFMPEG_CAPTURE_OPTIONS from the process environment at open time;
# cameras with different transports must not interleave setting it and opening, and one hung
# open must not block the other cameras (agent/sources/ffmpeg_options.py).
_FFMPEG_OPTIONS = OptionsGate()


class SourceError(Exception):
    """A source could not be opened or read; the message says why, for the status topic."""


class EndOfStream(SourceError):
    """A finite source (a video file that does not loop) has no more frames."""


@runtime_checkable
class FrameSource(Protocol):
    """What a camera reader needs from a capture. Owned by one thread."""

    @property
    def name(self) -> str:
        """A description safe to log (URLs redacted)."""
        ...

    def open(self) -> None:
        """Open the capture. Raises SourceError with a clear reason on failure."""
        ...

    def read(self) -> Image | None:
        """Return the next (h, w, 3) uint8 BGR frame, or None if the read failed.

        Raises EndOfStream when a finite source is exhausted. May block.
        """
        ...

    def close(self) -> None:
        """Release the capture. Safe to call more than once, and after a failed open."""
        ...

    def interrupt(self) -> None:
        """Ask a blocked read() to return soon. Called from another thread; best effort.

        OpenCV cannot cancel a read, so captures rely on their own timeouts; a paced file
        wakes from its pacing sleep.
        """
        ...


SourceFactory = Callable[[SourceConfig], FrameSource]
"""Builds an unopened FrameSource for a source config (injected into readers)."""


def redact_url(url: str) -> str:
    """Return `url` with any password in its user-info replaced by `***`.

    `rtsp://admin:secret@cam/stream` -> `rtsp://admin:***@cam/stream`; a `{password}`
    placeholder is shown as `***` too. URLs without credentials are returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    netloc = f"{user}:***@{hostport}" if sep else f"{user}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def rtsp_url(cfg: RtspSourceConfig, environ: dict[str, str] | None = None) -> str:
    """The URL to open: `{password}` replaced by the (percent-encoded) value of `cfg.password_env`.

    Raises:
        SourceError: the environment variable is not set (the message names the variable,
            never its value).
    """
    if cfg.password_env is None:
        return cfg.url
    env = os.environ if environ is None else environ
    value = env.get(cfg.password_env)
    if value is None:
        raise SourceError(
            f"environment variable {cfg.password_env} (source.password_env) is not set; "
            f"it holds the password for {redact_url(cfg.url)}"
        )
    # Percent-encode so a password holding '@', ':' or '/' cannot change the URL's meaning.
    return cfg.url.replace("{password}", quote(value, safe=""))


def opencv_has_gstreamer(build_information: str | None = None) -> bool:
    """Whether this OpenCV was built with GStreamer (parsed from cv2.getBuildInformation())."""
    info = cv2.getBuildInformation() if build_information is None else build_information
    match = re.search(r"^\s*GStreamer:\s*(\S+)", info, re.MULTILINE)
    return match is not None and match.group(1).upper() == "YES"


def _check_image(image: object, what: str) -> Image | None:
    if image is None:
        return None
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise SourceError(f"{what}: expected an (h, w, 3) uint8 BGR frame, got {type(image)}")
    if image.shape[2] != 3:
        raise SourceError(f"{what}: expected 3 colour channels, got shape {image.shape}")
    return image


class _OpenCvSource:
    """Shared parts: holds a cv2.VideoCapture, reads and releases it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cap: cv2.VideoCapture | None = None

    @property
    def name(self) -> str:
        return self._name

    def read(self) -> Image | None:
        if self._cap is None:
            raise SourceError(f"{self._name}: read() before open()")
        ok, image = self._cap.read()
        return _check_image(image, self._name) if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def interrupt(self) -> None:
        """No-op: OpenCV reads cannot be cancelled (open/read timeouts bound them instead)."""

    def _open_capture(
        self, target: str, api: int, failure: str, params: Sequence[int] = ()
    ) -> None:
        """Open `target` with the OpenCV backend `api`; `SourceError(failure)` if it does not."""
        self._cap = cv2.VideoCapture(target, api, list(params))
        if not self._cap.isOpened():
            self.close()
            raise SourceError(failure)


class FileSource(_OpenCvSource):
    """A video file: checked at open (exists, decodes a first frame), paced, optionally looped.

    Pacing follows a monotonic schedule at the file's fps (or the configured override):
    frame n is due at t0 + n / fps. A consumer that falls behind by more than one frame
    resyncs the schedule instead of bursting to catch up.
    """

    def __init__(
        self,
        cfg: FileSourceConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """Create an unopened file source.

        Args:
            cfg: the file source config.
            clock: monotonic clock for the pacing schedule.
            sleep: pacing sleep; by default an Event wait that interrupt() cuts short.
        """
        super().__init__(f"file {cfg.path}")
        self._cfg = cfg
        self._clock = clock
        self._wake = threading.Event()
        self._sleep = sleep if sleep is not None else self._pause
        self._first: Image | None = None
        self._fps: float | None = None
        self._next_due: float | None = None

    @property
    def fps(self) -> float | None:
        """Frames per second used for pacing (None before open)."""
        return self._fps

    def open(self) -> None:
        path = self._cfg.path
        if not path.exists():
            raise SourceError(f"video file not found: {path}")
        if not path.is_file():
            raise SourceError(f"video path is not a file: {path}")
        if not os.access(path, os.R_OK):
            raise SourceError(f"video file not readable (permissions): {path}")
        self._open_capture(
            str(path),
            cv2.CAP_FFMPEG,
            f"cannot open video file {path}: not a video OpenCV can decode, or corrupt",
        )
        ok, first = self._cap.read()
        if not ok or first is None:
            self.close()
            raise SourceError(f"cannot decode the first frame of {path}: corrupt or empty video")
        self._first = _check_image(first, self.name)
        header_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if self._cfg.fps is not None:
            self._fps = self._cfg.fps
        elif header_fps > 0 and np.isfinite(header_fps):
            self._fps = header_fps
        elif self._cfg.pace:
            self.close()
            raise SourceError(
                f"{path} has no usable fps in its header ({header_fps}); set source.fps "
                "or source.pace: false"
            )
        self._next_due = None
        log.info("file source opened", source=self.name, fps=self._fps, loop=self._cfg.loop)

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)

    def interrupt(self) -> None:
        """Wake a pacing sleep now (and skip later ones): the reader is stopping."""
        self._wake.set()

    def _rewind(self) -> Image | None:
        if self._cap is None:
            return None
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        ok, image = self._cap.read()
        if ok:
            return _check_image(image, self.name)
        # Some containers do not seek; reopening is the portable way back to frame 0.
        self._cap.release()
        self._cap = cv2.VideoCapture(str(self._cfg.path), cv2.CAP_FFMPEG)
        ok, image = self._cap.read()
        return _check_image(image, self.name) if ok else None

    def _pace(self) -> None:
        if not self._cfg.pace or self._fps is None:
            return
        interval = 1.0 / self._fps
        now = self._clock()
        if self._next_due is None or now - self._next_due > interval:
            self._next_due = now  # first frame, or we fell behind: resync, do not burst
        elif self._next_due > now:
            self._sleep(self._next_due - now)
        self._next_due += interval

    def read(self) -> Image | None:
        if self._cap is None:
            raise SourceError(f"{self.name}: read() before open()")
        if self._first is not None:
            image: Image | None = self._first
            self._first = None
        else:
            ok, raw = self._cap.read()
            image = _check_image(raw, self.name) if ok else None
            if image is None:
                if not self._cfg.loop:
                    raise EndOfStream(f"end of video file {self._cfg.path}")
                image = self._rewind()
                if image is None:
                    return None
        self._pace()
        return image

    def close(self) -> None:
        self._first = None
        super().close()


class V4l2Source(_OpenCvSource):
    """A V4L2 device node opened with cv2.CAP_V4L2 and the requested format."""

    def __init__(self, cfg: V4l2SourceConfig) -> None:
        super().__init__(f"v4l2 {cfg.device}")
        self._cfg = cfg

    def open(self) -> None:
        dev = self._cfg.device
        if not dev.exists():
            raise SourceError(f"V4L2 device {dev} does not exist (camera unplugged?)")
        self._open_capture(
            str(dev),
            cv2.CAP_V4L2,
            f"cannot open V4L2 device {dev} (busy, no permission, or not a camera)",
        )
        cfg = self._cfg
        if cfg.fourcc is not None:
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*cfg.fourcc))
        if cfg.width is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        if cfg.height is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        if cfg.fps is not None:
            self._cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        log.info(
            "v4l2 source opened",
            source=self.name,
            width=int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(self._cap.get(cv2.CAP_PROP_FPS)),
        )


class RtspSource(_OpenCvSource):
    """An RTSP stream over OpenCV's FFmpeg backend, with open and read timeouts."""

    def __init__(self, cfg: RtspSourceConfig, environ: dict[str, str] | None = None) -> None:
        super().__init__(f"rtsp {redact_url(cfg.url)}")
        self._cfg = cfg
        self._environ = environ

    def open(self) -> None:
        cfg = self._cfg
        url = rtsp_url(cfg, self._environ)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(cfg.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(cfg.read_timeout_s * 1000),
        ]
        failure = (
            f"RTSP stream {redact_url(cfg.url)} did not answer within "
            f"{cfg.open_timeout_s:g} s (refused, unreachable, wrong path or credentials)"
        )
        try:
            with _FFMPEG_OPTIONS.holding(f"rtsp_transport;{cfg.transport}", cfg.open_timeout_s):
                self._open_capture(url, cv2.CAP_FFMPEG, failure, params)
        except OptionsBusyError as err:
            raise SourceError(f"{self.name}: cannot open now: {err}") from None
        log.info("rtsp source opened", source=self.name, transport=cfg.transport)


class GStreamerSource(_OpenCvSource):
    """A raw GStreamer pipeline ending in appsink (cv2.CAP_GSTREAMER)."""

    def __init__(self, cfg: GStreamerSourceConfig, build_information: str | None = None) -> None:
        first = cfg.pipeline.split("!", 1)[0].strip()
        super().__init__(f"gstreamer {first} ! ...")
        self._cfg = cfg
        self._build_information = build_information

    def open(self) -> None:
        if not opencv_has_gstreamer(self._build_information):
            raise SourceError(
                "this OpenCV was built without GStreamer (cv2.getBuildInformation() shows "
                "'GStreamer: NO'); gstreamer sources need an OpenCV built with it, e.g. "
                "JetPack's python3-opencv instead of the opencv-python wheel"
            )
        self._open_capture(
            self._cfg.pipeline,
            cv2.CAP_GSTREAMER,
            f"GStreamer pipeline did not start ({self.name}); run it with "
            "gst-launch-1.0 (appsink -> fakesink) to see the element error",
        )
        log.info("gstreamer source opened", source=self.name)


def open_source(cfg: SourceConfig) -> FrameSource:
    """Build the (unopened) FrameSource for `cfg` by its `type`. The default SourceFactory."""
    if isinstance(cfg, FileSourceConfig):
        return FileSource(cfg)
    if isinstance(cfg, V4l2SourceConfig):
        return V4l2Source(cfg)
    if isinstance(cfg, RtspSourceConfig):
        return RtspSource(cfg)
    if isinstance(cfg, GStreamerSourceConfig):
        return GStreamerSource(cfg)
    raise SourceError(f"unknown source config {type(cfg).__name__}")


def describe_source(cfg: SourceConfig) -> str:
    """A one-line description of a source config that is safe to log (URLs redacted)."""
    if isinstance(cfg, RtspSourceConfig):
        return f"rtsp {redact_url(cfg.url)}"
    if isinstance(cfg, GStreamerSourceConfig):
        return "gstreamer " + cfg.pipeline.split("!", 1)[0].strip()
    if isinstance(cfg, V4l2SourceConfig):
        return f"v4l2 {cfg.device}"
    return f"file {Path(cfg.path)}"
