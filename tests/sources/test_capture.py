"""Opening real captures: files (good, missing, corrupt), RTSP that does not answer, GStreamer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.sources.capture import (
    EndOfStream,
    FileSource,
    FrameSource,
    GStreamerSource,
    RtspSource,
    SourceError,
    V4l2Source,
    open_source,
    opencv_has_gstreamer,
    redact_url,
    rtsp_url,
)
from agent.sources.config import (
    FileSourceConfig,
    GStreamerSourceConfig,
    RtspSourceConfig,
    V4l2SourceConfig,
)
from tests.sources.conftest import frame_number


class FakeTime:
    """A frozen monotonic clock whose sleep() advances it (records each sleep)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://cam/stream", "rtsp://cam/stream"),  # no credentials
        ("rtsp://admin@cam/s", "rtsp://admin@cam/s"),  # user only
        ("rtsp://admin:hunter2@cam:554/s?x=1", "rtsp://admin:***@cam:554/s?x=1"),  # password
        ("rtsp://admin:{password}@cam/s", "rtsp://admin:***@cam/s"),  # placeholder
        ("rtsp://a:p@ss@cam/s", "rtsp://a:***@cam/s"),  # '@' inside the password
    ],
)
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    """Only the password part of the user-info is replaced by ***."""
    assert redact_url(url) == expected


def test_rtsp_url_substitutes_the_percent_encoded_password() -> None:
    """The password from the environment replaces {password}, encoded so it cannot break the URL."""
    cfg = RtspSourceConfig(url="rtsp://admin:{password}@cam/s", password_env="CAM_PW")
    assert rtsp_url(cfg, {"CAM_PW": "p@ss:w/rd"}) == "rtsp://admin:p%40ss%3Aw%2Frd@cam/s"


def test_rtsp_url_names_a_missing_variable() -> None:
    """A missing password variable is reported by name."""
    cfg = RtspSourceConfig(url="rtsp://admin:{password}@cam/s", password_env="CAM_PW")
    with pytest.raises(SourceError, match="CAM_PW"):
        rtsp_url(cfg, {})


@pytest.mark.parametrize(
    ("cfg", "cls"),
    [
        (FileSourceConfig(path=Path("a.mp4")), FileSource),
        (V4l2SourceConfig(), V4l2Source),
        (RtspSourceConfig(url="rtsp://cam/s"), RtspSource),
        (GStreamerSourceConfig(pipeline="videotestsrc ! appsink"), GStreamerSource),
    ],
)
def test_open_source_picks_the_class_by_type(cfg: object, cls: type) -> None:
    """The default factory builds the FrameSource matching the config's type."""
    source = open_source(cfg)  # type: ignore[arg-type]
    assert isinstance(source, cls)
    assert isinstance(source, FrameSource)


def test_file_source_reads_every_frame_in_order(clips: dict[str, Path]) -> None:
    """A non-looping file yields its frames in order, then EndOfStream."""
    src = FileSource(FileSourceConfig(path=clips["short"], loop=False, pace=False))
    src.open()
    try:
        numbers = [frame_number(src.read()) for _ in range(10)]  # type: ignore[arg-type]
        with pytest.raises(EndOfStream, match="end of video file"):
            src.read()
    finally:
        src.close()
    assert numbers == list(range(10))


def test_file_source_loops_back_to_the_first_frame(clips: dict[str, Path]) -> None:
    """A looping file starts again at frame 0 after its last frame."""
    src = FileSource(FileSourceConfig(path=clips["short"], loop=True, pace=False))
    src.open()
    try:
        numbers = [frame_number(src.read()) for _ in range(23)]  # type: ignore[arg-type]
    finally:
        src.close()
    assert numbers == list(range(10)) + list(range(10)) + [0, 1, 2]


def test_file_source_paces_at_the_header_fps(clips: dict[str, Path]) -> None:
    """With pace on, frame n is released at t0 + n / fps (25 fps header), on a frozen clock."""
    t = FakeTime()
    src = FileSource(FileSourceConfig(path=clips["paced"], pace=True), clock=t.clock, sleep=t.sleep)
    src.open()
    start = t.now
    try:
        for _ in range(11):
            src.read()
    finally:
        src.close()
    assert src.fps == 25.0
    assert t.now - start == pytest.approx(10 / 25.0)


def test_file_source_fps_override_wins_over_the_header(clips: dict[str, Path]) -> None:
    """source.fps replaces a wrong header rate for pacing."""
    t = FakeTime()
    cfg = FileSourceConfig(path=clips["paced"], pace=True, fps=5.0)
    src = FileSource(cfg, clock=t.clock, sleep=t.sleep)
    src.open()
    start = t.now
    try:
        for _ in range(6):
            src.read()
    finally:
        src.close()
    assert t.now - start == pytest.approx(1.0)


def test_file_source_without_pacing_never_sleeps(clips: dict[str, Path]) -> None:
    """pace: false delivers frames as fast as they decode."""
    t = FakeTime()
    src = FileSource(
        FileSourceConfig(path=clips["paced"], pace=False), clock=t.clock, sleep=t.sleep
    )
    src.open()
    try:
        for _ in range(20):
            src.read()
    finally:
        src.close()
    assert t.sleeps == []


def test_file_source_resyncs_instead_of_bursting_after_a_slow_consumer(
    clips: dict[str, Path],
) -> None:
    """A consumer that falls behind is not handed a burst of catch-up frames with no pacing."""
    t = FakeTime()
    src = FileSource(FileSourceConfig(path=clips["paced"], pace=True), clock=t.clock, sleep=t.sleep)
    src.open()
    try:
        src.read()
        t.now += 1.0  # consumer busy for 25 frame intervals
        src.read()
        before = t.now
        src.read()
    finally:
        src.close()
    assert t.now - before == pytest.approx(1 / 25.0)


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("missing", "video file not found"),  # path does not exist
        ("directory", "not a file"),  # a directory
        ("garbage_file", "not a video OpenCV can decode, or corrupt"),  # random bytes
        ("truncated_file", "cannot decode the first frame"),  # real clip cut short
        ("empty_clip", "corrupt or empty video"),  # container without frames
    ],
)
def test_bad_video_files_fail_to_open_with_a_clear_error(
    fixture: str, message: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Missing, non-file, corrupt, truncated and empty videos raise SourceError saying which."""
    path = {"missing": tmp_path / "nope.mp4", "directory": tmp_path}.get(fixture)
    if path is None:
        path = request.getfixturevalue(fixture)
    src = FileSource(FileSourceConfig(path=path))
    with pytest.raises(SourceError, match=message):
        src.open()
    src.close()


def test_v4l2_missing_device_is_reported() -> None:
    """A device node that does not exist gives a clear error, not an OpenCV warning."""
    src = V4l2Source(V4l2SourceConfig(device=Path("/dev/video-does-not-exist")))
    with pytest.raises(SourceError, match="does not exist"):
        src.open()


def test_rtsp_refused_port_fails_fast(free_port: int) -> None:
    """An RTSP URL on a port where nothing listens fails to open, naming the redacted URL."""
    cfg = RtspSourceConfig(
        url=f"rtsp://admin:{{password}}@127.0.0.1:{free_port}/s",
        password_env="TEST_CAM_PW",
        open_timeout_s=1.0,
    )
    src = RtspSource(cfg, environ={"TEST_CAM_PW": "hunter2"})
    with pytest.raises(SourceError, match="did not answer") as info:
        src.open()
    assert "hunter2" not in str(info.value)
    assert "admin:***@" in str(info.value)


def test_rtsp_silent_server_gives_up_after_the_open_timeout(silent_server: int) -> None:
    """A server that accepts but never answers is abandoned at open_timeout_s, not hung on."""
    cfg = RtspSourceConfig(url=f"rtsp://127.0.0.1:{silent_server}/s", open_timeout_s=0.5)
    src = RtspSource(cfg)
    start = time.monotonic()
    with pytest.raises(SourceError, match="within 0.5 s"):
        src.open()
    # Bound, not a performance figure: without the timeout FFmpeg waits indefinitely.
    assert time.monotonic() - start < 10.0


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ("  Video I/O:\n    GStreamer:                   NO\n", False),  # pip wheel
        ("  Video I/O:\n    GStreamer:                   YES (1.20.3)\n", True),  # JetPack
        ("  Video I/O:\n    FFMPEG: YES\n", False),  # line absent
    ],
)
def test_gstreamer_support_is_read_from_build_information(info: str, expected: bool) -> None:
    """GStreamer support is parsed from cv2.getBuildInformation() text."""
    assert opencv_has_gstreamer(info) is expected


def test_gstreamer_without_support_says_so() -> None:
    """On an OpenCV without GStreamer the error says exactly that (no silent failure)."""
    src = GStreamerSource(
        GStreamerSourceConfig(pipeline="videotestsrc ! appsink"),
        build_information="    GStreamer:                   NO\n",
    )
    with pytest.raises(SourceError, match="built without GStreamer"):
        src.open()
