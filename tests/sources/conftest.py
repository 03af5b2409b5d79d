"""Fixtures for the source tests: short real video clips written with cv2.VideoWriter."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config import CameraConfig
from agent.sources.config import SourceConfig
from agent.sources.reader import CameraReader
from tests.helpers import broker

CLIP_STEP = 20
"""Frame i of a test clip is a uniform image of value i * CLIP_STEP (MJPEG keeps it close)."""


def write_clip(path: Path, frames: int, fps: float, size: tuple[int, int] = (64, 48)) -> Path:
    """Write an MJPEG AVI whose frame i is uniform grey i * CLIP_STEP; return its path."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path}")
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (i * CLIP_STEP) % 256, np.uint8))
    writer.release()
    return path


def frame_number(image: np.ndarray) -> int:
    """Recover the clip frame number from a (h, w, 3) uint8 test frame."""
    return int(round(float(image.mean()) / CLIP_STEP))


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short real clips: 'short' 10 frames at 50 fps, 'paced' 40 frames at 25 fps."""
    d = tmp_path_factory.mktemp("clips")
    return {
        "short": write_clip(d / "short.avi", 10, 50.0),
        "paced": write_clip(d / "paced.avi", 40, 25.0),
    }


@pytest.fixture
def garbage_file(tmp_path: Path) -> Path:
    """A file named like a video that holds random bytes."""
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    return path


@pytest.fixture
def truncated_file(tmp_path: Path, demo_clip: Path) -> Path:
    """The bundled H.264 demo clip cut after 40 kB: container opens, first frame does not decode."""
    path = tmp_path / "truncated.mp4"
    path.write_bytes(demo_clip.read_bytes()[:40_000])
    return path


@pytest.fixture
def empty_clip(tmp_path: Path) -> Path:
    """A valid AVI container with no frames at all."""
    return write_clip(tmp_path / "empty.avi", 0, 25.0)


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    return broker.free_port()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback TCP server that accepts connections and never says a word; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield int(srv.getsockname()[1])
    srv.close()


@pytest.fixture
def make_reader() -> Iterator[Callable[..., CameraReader]]:
    """Build readers that are always stopped after the test."""
    made: list[CameraReader] = []

    def make(camera: str, source: SourceConfig, **kwargs: object) -> CameraReader:
        factory = kwargs.pop("source_factory", None)
        signal = kwargs.pop("signal", None)
        cfg = CameraConfig(id=camera, source=source, **kwargs)  # type: ignore[arg-type]
        extra = {} if factory is None else {"source_factory": factory}
        reader = CameraReader(cfg, signal=signal, **extra)  # type: ignore[arg-type]
        made.append(reader)
        return reader

    yield make
    for r in made:
        r.stop(timeout=1.0)
