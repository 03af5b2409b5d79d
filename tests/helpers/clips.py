"""Clips cut from the demo clip, written as real mp4 files for daemon tests."""

from __future__ import annotations

from pathlib import Path

import cv2

from tests.helpers.daemon import DEMO_CLIP


def cut_demo_clip(path: Path, first: int, last: int, step: int = 1, fps: float = 10.0) -> Path:
    """Write frames `first`, `first + step`, ... below `last` of the demo clip to `path` (mp4v at
    `fps`); fails the test when the demo clip has fewer than `last` frames."""
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    writer = None
    for i in range(last):
        ok, img = cap.read()
        assert ok, f"clip.mp4 has fewer than {last} frames"
        if i >= first and (i - first) % step == 0:
            if writer is None:
                h, w = img.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(img)
    cap.release()
    assert writer is not None
    writer.release()
    return path
