"""CameraReader and ReaderGroup on real clips, real sockets, and a fake only for a V4L2 device."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import structlog.testing

from agent.config import CameraConfig
from agent.sources.capture import Image, opencv_has_gstreamer
from agent.sources.config import (
    FileSourceConfig,
    GStreamerSourceConfig,
    RtspSourceConfig,
    SourceConfig,
    V4l2SourceConfig,
)
from agent.sources.reader import CameraReader, FrameSignal, ReaderGroup
from agent.sources.state import CameraState
from agent.types import Frame
from tests.helpers.polling import wait_until
from tests.sources.conftest import frame_number

MakeReader = Callable[..., CameraReader]


def file_cfg(
    path: Path, loop: bool = True, pace: bool = True, every_frame: bool = False
) -> FileSourceConfig:
    """A file source. Tests that let a file play with nobody taking frames pace it (the short
    clip's 50 fps): with `pace: false` the reader decodes on demand and waits for the loop."""
    return FileSourceConfig(path=path, loop=loop, pace=pace, every_frame=every_frame)


class HangingCamera:
    """Stands in for a V4L2 camera (hardware we lack) that delivers a few frames, then hangs."""

    name = "fake v4l2 /dev/video9"

    def __init__(self, frames_before_hang: int, release: threading.Event) -> None:
        self._left = frames_before_hang
        self._release = release
        self.closed = False

    def open(self) -> None:
        pass

    def read(self) -> Image | None:
        if self._left > 0:
            self._left -= 1
            time.sleep(0.01)
            return np.zeros((4, 6, 3), np.uint8)
        self._release.wait()  # like a driver that never returns from VIDIOC_DQBUF
        return None

    def close(self) -> None:
        self.closed = True

    def interrupt(self) -> None:
        pass  # like OpenCV: a hung driver read cannot be cancelled


@pytest.fixture
def hanging_factory() -> Iterator[
    tuple[Callable[[SourceConfig], HangingCamera], list[HangingCamera]]
]:
    """A source factory of HangingCameras; every hung read is released after the test."""
    release = threading.Event()
    made: list[HangingCamera] = []

    def factory(cfg: SourceConfig) -> HangingCamera:
        cam = HangingCamera(3, release)
        made.append(cam)
        return cam

    yield factory, made
    release.set()


# -- newest-frame mailbox --------------------------------------------------------------------
def test_only_the_newest_frame_is_kept(make_reader: MakeReader, clips: dict[str, Path]) -> None:
    """An unconsumed frame is replaced by the next; the reader hands out only the last one."""
    reader = make_reader("cam1", file_cfg(clips["short"], loop=False))
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.STOPPED, 5.0)
    frame = reader.latest()
    assert frame is not None
    assert (frame.index, frame_number(frame.image)) == (9, 9)
    stats = reader.stats()
    assert (stats.frames, stats.dropped, stats.delivered) == (10, 9, 1)


def test_latest_returns_nothing_newer_than_after_index(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """latest(after_index) gives None when the newest frame is not newer than after_index."""
    reader = make_reader("cam1", file_cfg(clips["short"], loop=False))
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.STOPPED, 5.0)
    frame = reader.latest(-1)
    assert frame is not None
    assert reader.latest(frame.index) is None
    assert reader.latest(frame.index - 1) is frame


def test_frames_carry_camera_clocks_and_pixels(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """A Frame has the camera id, wall and monotonic capture times, and (h, w, 3) uint8 pixels."""
    before_wall, before_mono = time.time(), time.monotonic()
    reader = make_reader("cam-7", file_cfg(clips["short"], loop=False))
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.STOPPED, 5.0)
    frame = reader.latest()
    assert isinstance(frame, Frame)
    assert frame.camera == "cam-7"
    assert before_wall <= frame.captured_at <= time.time()
    assert before_mono <= frame.captured_mono <= time.monotonic()
    assert (frame.height, frame.width, frame.image.dtype) == (48, 64, np.uint8)


# -- pacing, fps cap, loop, end of file ------------------------------------------------------
def collect(
    group: ReaderGroup, until: Callable[[list[Frame]], bool], timeout: float
) -> list[Frame]:
    """Take frames from `group` like the inference loop until `until(frames)` or timeout."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(frames):
        frame = group.next_frame(timeout=0.1)
        if frame is not None:
            frames.append(frame)
    return frames


def test_paced_file_releases_frames_at_its_fps(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """A paced 25 fps file never delivers faster than 25 frames per second of capture time."""
    reader = make_reader("cam1", file_cfg(clips["paced"]))
    group = ReaderGroup([reader], reader.signal)
    group.start()
    frames = collect(group, lambda fs: len(fs) >= 12, 5.0)
    assert len(frames) >= 12
    indices = [f.index for f in frames]
    span = frames[-1].captured_mono - frames[0].captured_mono
    # Frame n is scheduled at t0 + n/25; OpenCV may be late, never early.
    assert span >= (indices[-1] - indices[0]) / 25.0 - 1e-3


def test_fps_cap_skips_frames_beyond_the_cap(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """With fps_cap 5 on a 25 fps file most frames are skipped and the offered rate stays ≤ 5/s."""
    reader = make_reader("cam1", file_cfg(clips["paced"], loop=False), fps_cap=5.0)
    group = ReaderGroup([reader], reader.signal)
    group.start()
    frames = collect(group, lambda fs: reader.state is CameraState.STOPPED, 5.0)
    while (last := group.next_frame(0.05)) is not None:  # the frame left in the mailbox
        frames.append(last)
    stats = reader.stats()
    assert stats.frames == 40
    assert stats.skipped >= 25
    assert len(frames) + stats.skipped + stats.dropped == 40
    span = frames[-1].captured_mono - frames[0].captured_mono
    assert span >= (len(frames) - 2) / 5.0


def test_looping_file_keeps_streaming_past_its_end(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """A looping 10-frame clip keeps producing: frame index i shows clip frame i % 10."""
    reader = make_reader("cam1", file_cfg(clips["short"], loop=True, pace=False))
    group = ReaderGroup([reader], reader.signal)
    group.start()
    frames = collect(group, lambda fs: bool(fs) and fs[-1].index >= 25, 5.0)
    assert frames[-1].index >= 25
    assert [frame_number(f.image) for f in frames] == [f.index % 10 for f in frames]
    assert reader.state is CameraState.STREAMING
    assert reader.stats().reconnects == 0


def test_non_looping_file_stops_at_its_end(make_reader: MakeReader, clips: dict[str, Path]) -> None:
    """A file with loop: false ends in STOPPED and says why."""
    reader = make_reader("cam1", file_cfg(clips["short"], loop=False))
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.STOPPED, 5.0)
    assert "end of video file" in (reader.stats().last_error or "")


# -- decode on demand, every frame, end of a job ---------------------------------------------
def take(group: ReaderGroup, n: int, pause_s: float, check: Callable[[], None]) -> list[Frame]:
    """Take `n` frames like an inference loop that needs `pause_s` per frame; `check()` after
    each take."""
    frames: list[Frame] = []
    while len(frames) < n:
        frame = group.next_frame(timeout=5.0)
        assert frame is not None, f"no frame after {len(frames)}"
        frames.append(frame)
        check()
        time.sleep(pause_s)
    return frames


def test_unpaced_file_is_decoded_on_demand(make_reader: MakeReader, clips: dict[str, Path]) -> None:
    """pace: false: a frame is decoded only once the loop took the previous one, so a loop
    slower than decoding gets every frame in order and none is decoded only to be dropped."""
    reader = make_reader("cam1", file_cfg(clips["short"], loop=False, pace=False))
    group = ReaderGroup([reader], reader.signal)
    group.start()
    ahead: list[int] = []
    frames = take(group, 10, 0.03, lambda: ahead.append(reader.stats().frames - 1))
    assert [frame_number(f.image) for f in frames] == list(range(10))
    assert all(newest <= i + 1 for i, newest in enumerate(ahead)), ahead  # one frame ahead
    assert wait_until(lambda: reader.state is CameraState.STOPPED, 5.0)
    stats = reader.stats()
    assert (stats.frames, stats.dropped, stats.delivered) == (10, 0, 10)
    assert not reader.finished  # not every_frame: a finished file does not end the daemon


def test_every_frame_paced_file_waits_for_a_slow_loop_then_finishes(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """every_frame on a paced 50 fps file read by a 20 fps loop: every frame arrives (the file
    slows down instead of dropping), and the group is finished once the last one is taken."""
    reader = make_reader("cam1", file_cfg(clips["short"], loop=False, every_frame=True))
    group = ReaderGroup([reader], reader.signal)
    group.start()
    seen: list[bool] = []
    frames = take(group, 10, 0.05, lambda: seen.append(group.finished()))
    assert [frame_number(f.image) for f in frames] == list(range(10))
    assert not any(seen[:-1])  # never finished while a frame was still to come
    assert wait_until(group.finished, 5.0)
    assert reader.stats().dropped == 0


def test_a_reader_waiting_for_the_loop_is_not_stalled(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """A reader that waits for a busy loop to take its frame is not stalled, and stops at once."""
    src = file_cfg(clips["short"], loop=False, pace=False, every_frame=True)
    reader = make_reader("cam1", src, stall_timeout_s=0.2)
    group = ReaderGroup([reader], reader.signal)
    group.start()
    assert group.next_frame(timeout=5.0) is not None
    time.sleep(0.8)  # the loop is busy for four stall timeouts; the watcher polls meanwhile
    assert reader.state is CameraState.STREAMING
    frame = group.next_frame(timeout=5.0)
    assert frame is not None and frame.index == 1
    start = time.monotonic()
    assert group.stop(timeout=2.0)
    assert time.monotonic() - start < 1.0


# -- bad inputs: backoff with a clear error, other cameras unaffected ------------------------
@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("missing", "video file not found"),  # path does not exist
        ("garbage_file", "not a video OpenCV can decode, or corrupt"),  # random bytes
        ("truncated_file", "cannot decode the first frame"),  # real clip cut short
    ],
)
def test_bad_video_backs_off_while_another_camera_keeps_producing(
    fixture: str,
    message: str,
    make_reader: MakeReader,
    clips: dict[str, Path],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """A dead file camera goes to backoff with a clear error; a good camera keeps delivering."""
    bad_path = tmp_path / "nope.mp4" if fixture == "missing" else request.getfixturevalue(fixture)
    signal = FrameSignal()
    good = make_reader("good", file_cfg(clips["paced"]), signal=signal)
    bad = make_reader(
        "bad", file_cfg(bad_path), signal=signal, backoff_min_s=0.05, backoff_max_s=0.2
    )
    group = ReaderGroup([good, bad], signal)
    group.start()
    assert wait_until(lambda: bad.stats().reconnects >= 2, 5.0)
    frames = collect(group, lambda fs: len(fs) >= 8, 5.0)
    assert [f.camera for f in frames] == ["good"] * 8
    assert frames[-1].index > frames[0].index
    assert good.state is CameraState.STREAMING
    stats = bad.stats()
    assert stats.state in (CameraState.BACKOFF, CameraState.CONNECTING)
    assert message in (stats.last_error or "")
    assert stats.frames == 0


def test_rtsp_with_no_listener_goes_to_backoff_within_open_timeout(
    make_reader: MakeReader, free_port: int
) -> None:
    """An RTSP URL on a port where nothing listens ends in backoff, not a hang."""
    src = RtspSourceConfig(url=f"rtsp://127.0.0.1:{free_port}/live", open_timeout_s=1.0)
    reader = make_reader("door", src, backoff_min_s=5.0, backoff_max_s=10.0)
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.BACKOFF, 1.0 + 2.0)
    assert "did not answer" in (reader.stats().last_error or "")


def test_rtsp_silent_server_goes_to_backoff_after_open_timeout(
    make_reader: MakeReader, silent_server: int
) -> None:
    """An RTSP server that accepts but never answers is given up on after open_timeout_s."""
    src = RtspSourceConfig(url=f"rtsp://127.0.0.1:{silent_server}/live", open_timeout_s=0.5)
    reader = make_reader("door", src, backoff_min_s=5.0, backoff_max_s=10.0)
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.BACKOFF, 0.5 + 2.5)
    assert "within 0.5 s" in (reader.stats().last_error or "")


@pytest.mark.skipif(
    opencv_has_gstreamer(), reason="this OpenCV has GStreamer; error path not reachable"
)
def test_gstreamer_source_without_gstreamer_goes_to_backoff(make_reader: MakeReader) -> None:
    """On an OpenCV without GStreamer a gstreamer camera backs off saying exactly that."""
    src = GStreamerSourceConfig(pipeline="videotestsrc ! videoconvert ! appsink")
    reader = make_reader("csi0", src, backoff_min_s=5.0, backoff_max_s=10.0)
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.BACKOFF, 3.0)
    assert "built without GStreamer" in (reader.stats().last_error or "")


def test_missing_v4l2_device_goes_to_backoff(make_reader: MakeReader) -> None:
    """A V4L2 node that does not exist (unplugged camera) backs off with a clear error."""
    src = V4l2SourceConfig(device=Path("/dev/video-does-not-exist"))
    reader = make_reader("usb0", src, backoff_min_s=5.0, backoff_max_s=10.0)
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.BACKOFF, 3.0)
    assert "does not exist" in (reader.stats().last_error or "")


def test_every_camera_dead_reports_all_in_backoff(make_reader: MakeReader, tmp_path: Path) -> None:
    """When every camera is in backoff the group says so (the watchdog may keep pinging)."""
    signal = FrameSignal()
    readers = [
        make_reader(
            f"c{i}",
            file_cfg(tmp_path / f"{i}.mp4"),
            signal=signal,
            backoff_min_s=5.0,
            backoff_max_s=10.0,
        )
        for i in range(2)
    ]
    group = ReaderGroup(readers, signal)
    group.start()
    assert wait_until(lambda: set(group.states().values()) == {CameraState.BACKOFF}, 3.0)


# -- hung reads: stall by frame age, bounded stop, abandon and reconnect ---------------------
def test_hung_read_is_detected_as_stalled_by_frame_age(
    make_reader: MakeReader,
    hanging_factory: tuple[Callable[..., HangingCamera], list[HangingCamera]],
) -> None:
    """A camera whose read() stops returning becomes STALLED once its newest frame is too old."""
    factory, _ = hanging_factory
    reader = make_reader("usb0", V4l2SourceConfig(), source_factory=factory, stall_timeout_s=0.2)
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.STREAMING, 2.0)
    assert wait_until(lambda: reader.state is CameraState.STALLED, 2.0)
    stats = reader.stats()
    assert stats.frame_age_s is not None and stats.frame_age_s > 0.2
    assert "no frame for" in (stats.last_error or "")


def test_stop_returns_in_bounded_time_while_read_hangs(
    make_reader: MakeReader,
    hanging_factory: tuple[Callable[..., HangingCamera], list[HangingCamera]],
) -> None:
    """stop() gives up on a thread stuck in read() after its timeout and reports it."""
    factory, _ = hanging_factory
    reader = make_reader("usb0", V4l2SourceConfig(), source_factory=factory, stall_timeout_s=0.2)
    reader.start()
    assert wait_until(lambda: reader.state is CameraState.STALLED, 3.0)
    start = time.monotonic()
    ended = reader.stop(timeout=0.3)
    elapsed = time.monotonic() - start
    assert ended is False
    assert elapsed < 2.0  # a bound on a hang, not a performance figure
    assert reader.state is CameraState.STOPPED


def test_hung_read_is_abandoned_and_the_camera_reconnects(
    make_reader: MakeReader,
    hanging_factory: tuple[Callable[..., HangingCamera], list[HangingCamera]],
) -> None:
    """After 2 x stall_timeout_s in one read the thread is abandoned and a new capture is opened."""
    factory, made = hanging_factory
    reader = make_reader(
        "usb0",
        V4l2SourceConfig(),
        source_factory=factory,
        stall_timeout_s=0.15,
        backoff_min_s=0.05,
        backoff_max_s=0.1,
    )
    reader.start()
    assert wait_until(lambda: reader.stats().frames >= 4 and len(made) >= 2, 3.0)
    stats = reader.stats()
    assert stats.reconnects >= 1
    assert "read() blocked for" in (stats.last_error or "")
    assert stats.frames >= 4  # the new capture delivered again


def test_group_stop_is_bounded_with_a_hung_camera(
    make_reader: MakeReader,
    clips: dict[str, Path],
    hanging_factory: tuple[Callable[..., HangingCamera], list[HangingCamera]],
) -> None:
    """Stopping all cameras returns within the timeout even if one is stuck in read()."""
    factory, _ = hanging_factory
    signal = FrameSignal()
    hung = make_reader(
        "usb0", V4l2SourceConfig(), source_factory=factory, signal=signal, stall_timeout_s=5.0
    )
    good = make_reader("file0", file_cfg(clips["paced"]), signal=signal)
    group = ReaderGroup([hung, good], signal)
    group.start()
    assert wait_until(lambda: hung.stats().frames == 3 and good.stats().frames > 0, 3.0)
    start = time.monotonic()
    assert group.stop(timeout=0.5) is False
    assert time.monotonic() - start < 2.0  # a bound on a hang, not a performance figure
    assert good.state is CameraState.STOPPED and hung.state is CameraState.STOPPED


# -- the feed the inference loop uses ---------------------------------------------------------
def test_frame_signal_wait_returns_at_once_after_a_change() -> None:
    """A waiter that saw version v returns immediately if the version moved past v."""
    signal = FrameSignal()
    seen = signal.version
    signal.notify()
    assert signal.wait(seen, timeout=10.0) == seen + 1


def test_frame_signal_wait_times_out_without_a_change() -> None:
    """With no notification the wait ends at its timeout and returns the same version."""
    signal = FrameSignal()
    assert signal.wait(signal.version, timeout=0.02) == 0


def test_frame_signal_wakes_a_waiting_thread() -> None:
    """A notify from another thread wakes the waiter before its timeout."""
    signal = FrameSignal()
    seen = signal.version
    timer = threading.Timer(0.05, signal.notify)
    timer.start()
    assert signal.wait(seen, timeout=10.0) == seen + 1
    timer.join()


def test_group_takes_cameras_in_turn(make_reader: MakeReader, clips: dict[str, Path]) -> None:
    """next_frame serves each camera's newest frame once, round robin, then times out."""
    signal = FrameSignal()
    readers = [
        make_reader(c, file_cfg(clips["short"], loop=False), signal=signal) for c in ("a", "b")
    ]
    group = ReaderGroup(readers, signal)
    group.start()
    assert wait_until(lambda: all(r.state is CameraState.STOPPED for r in readers), 5.0)
    first, second = group.next_frame(0.1), group.next_frame(0.1)
    assert first is not None and second is not None
    assert {first.camera, second.camera} == {"a", "b"}
    assert group.next_frame(0.05) is None


def test_group_refuses_readers_on_another_signal(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """Readers must share the group's signal, or the loop would sleep through their frames."""
    reader = make_reader("a", file_cfg(clips["short"]))
    with pytest.raises(ValueError, match="signal"):
        ReaderGroup([reader], FrameSignal())


def test_group_watcher_marks_a_stall_while_nobody_asks_for_frames(
    make_reader: MakeReader,
    hanging_factory: tuple[Callable[..., HangingCamera], list[HangingCamera]],
) -> None:
    """The group's watcher notices a stall even when the inference loop is not polling."""
    factory, _ = hanging_factory
    signal = FrameSignal()
    hung = make_reader(
        "usb0", V4l2SourceConfig(), source_factory=factory, signal=signal, stall_timeout_s=0.2
    )
    group = ReaderGroup([hung], signal)
    group.start()
    try:
        assert wait_until(lambda: hung.stats().frames == 3, 3.0)
        time.sleep(0.05)  # let the last frame's notification land
        seen = signal.version
        # Nobody calls the reader now; only the watcher can turn frame age into a stall.
        assert signal.wait(seen, timeout=2.0) != seen
        assert hung.state is CameraState.STALLED
    finally:
        group.stop(timeout=0.2)


def test_a_failing_source_factory_backs_off_instead_of_killing_the_reader(
    make_reader: MakeReader,
) -> None:
    """An exception while building the source is a camera failure (backoff), not a dead thread."""

    def broken_factory(cfg: SourceConfig) -> HangingCamera:
        raise OSError("no such driver")

    reader = make_reader(
        "usb0",
        V4l2SourceConfig(),
        source_factory=broken_factory,
        backoff_min_s=0.05,
        backoff_max_s=0.1,
    )
    reader.start()
    assert wait_until(lambda: reader.stats().reconnects >= 2, 3.0)
    assert "no such driver" in (reader.stats().last_error or "")


def test_rtsp_password_never_reaches_logs_or_stats(
    make_reader: MakeReader, free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password from the environment is used to connect but never logged or reported."""
    monkeypatch.setenv("TEST_DOOR_PW", "hunter2-secret")
    src = RtspSourceConfig(
        url=f"rtsp://admin:{{password}}@127.0.0.1:{free_port}/live",
        password_env="TEST_DOOR_PW",
        open_timeout_s=0.5,
    )
    with structlog.testing.capture_logs() as logs:
        reader = make_reader("door", src, backoff_min_s=5.0, backoff_max_s=10.0)
        reader.start()
        assert wait_until(lambda: reader.state is CameraState.BACKOFF, 3.0)
    error = reader.stats().last_error or ""
    assert "admin:***@" in error
    assert logs, "the failure was not logged"
    assert "hunter2-secret" not in repr(logs) + error


def test_group_from_configs_builds_one_reader_per_camera_on_one_signal(tmp_path: Path) -> None:
    """from_configs keeps the config order and shares one signal across the readers."""
    cams = [
        CameraConfig(id=c, source=FileSourceConfig(path=tmp_path / f"{c}.mp4")) for c in ("b", "a")
    ]
    group = ReaderGroup.from_configs(cams)
    assert [r.camera_id for r in group.readers] == ["b", "a"]
    assert all(r.signal is group.signal for r in group.readers)
    assert not any(r.started for r in group.readers)


def test_stop_wakes_a_slow_paced_file_at_once(
    make_reader: MakeReader, clips: dict[str, Path]
) -> None:
    """A file paced at 0.2 fps (5 s between frames) stops cleanly well within the stop timeout."""
    src = FileSourceConfig(path=clips["paced"], pace=True, fps=0.2)
    reader = make_reader("slow", src, stall_timeout_s=30.0)
    reader.start()
    assert wait_until(lambda: reader.stats().frames >= 1, 3.0)
    time.sleep(0.05)  # the thread is now in its 5 s pacing sleep
    assert reader.stop(timeout=1.0) is True
