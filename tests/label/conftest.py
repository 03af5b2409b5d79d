"""Real inputs for the labeller tests: a short clip and frames cut from the demo clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import DEMO_DIR

CLIP_FRAMES = 30
CLIP_FPS = 10.0


def demo_frames(count: int, step: int = 1) -> list[np.ndarray]:
    """The first `count` frames (every `step`-th) of the bundled demo clip, (h, w, 3) BGR."""
    cap = cv2.VideoCapture(str(DEMO_DIR / "clip.mp4"))
    frames: list[np.ndarray] = []
    index = 0
    try:
        while len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(frame)
            index += 1
    finally:
        cap.release()
    assert len(frames) == count, f"demo clip gave {len(frames)} of {count} frames"
    return frames


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3 s MJPEG clip (30 frames, 10 fps) cut from the demo clip."""
    path = tmp_path_factory.mktemp("clip") / "street.avi"
    frames = demo_frames(CLIP_FRAMES)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (w, h))
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == CLIP_FRAMES, "test clip was not written"
    cap.release()
    return path


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 5 real street images: 4 JPEG at the top, 1 PNG in a sub-folder."""
    folder = tmp_path_factory.mktemp("images")
    frames = demo_frames(5, step=40)
    for i, frame in enumerate(frames[:4]):
        cv2.imwrite(str(folder / f"shot{i}.jpg"), frame)
    (folder / "more").mkdir()
    cv2.imwrite(str(folder / "more" / "shot4.png"), frames[4])
    return folder
