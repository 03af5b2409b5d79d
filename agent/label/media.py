"""Reading the labeller's input: a video file (frame by frame) or a folder of images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.label.dataset import LabelError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class VideoInfo:
    """What a video container declares: frame count and frame rate (0 when unknown)."""

    frames: int
    fps: float


def iter_video(path: Path) -> Iterator[tuple[int, npt.NDArray[np.uint8]]]:
    """Yield (index, (h, w, 3) uint8 BGR frame) for every frame of the video at `path`.

    Raises:
        LabelError: the file is missing or OpenCV cannot decode a single frame of it.
    """
    import cv2

    if not path.is_file():
        raise LabelError(f"video {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            raise LabelError(f"video {path} is unreadable: OpenCV decoded no frame from it")
        index = 0
        while ok and frame is not None:
            yield index, frame
            index += 1
            ok, frame = cap.read()
    finally:
        cap.release()


def video_info(path: Path) -> VideoInfo:
    """Frame count and rate the container declares (0 for what it does not declare)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return VideoInfo(frames=0, fps=0.0)
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()
    return VideoInfo(frames=max(frames, 0), fps=fps if fps > 0 else 0.0)


def video_fps(path: Path) -> float:
    """Frame rate the container declares (0.0 when unknown)."""
    return video_info(path).fps


def thumbnail(frame: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Grey (size[1], size[0]) uint8 thumbnail of a (h, w, 3) BGR frame."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def list_images(folder: Path) -> list[tuple[str, Path]]:
    """(sample stem, path) of every image under `folder`, recursively, sorted by path.

    The stem is the relative path without suffix, '/' replaced by '__'.

    Raises:
        LabelError: no image found, or two files would get the same stem.
    """
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise LabelError(f"folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    seen: dict[str, Path] = {}
    for p in files:
        stem = "__".join(p.relative_to(folder).with_suffix("").parts)
        if stem in seen:
            raise LabelError(f"images {seen[stem]} and {p} would get the same name {stem!r}")
        seen[stem] = p
    return list(seen.items())


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """Read one image as (h, w, 3) uint8 BGR.

    Raises:
        LabelError: OpenCV cannot decode it.
    """
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise LabelError(f"image {path} is unreadable: OpenCV could not decode it")
    return image
