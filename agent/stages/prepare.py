"""Prepare a batch: letterbox its frames into one of two reused input buffers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agent.engines.yolo import Letterboxer, LetterboxInfo
from agent.types import Frame

if TYPE_CHECKING:
    from agent.engines.detector import Detector


@dataclass
class Batch:
    """Frames that go through the engine together, and what each stage adds to them.

    Attributes:
        frames: one frame per camera, in the order the feed gave them (row k is frame k).
        detector: the model of every stage of this batch (a swap happens between batches).
        tensor: (len(frames), 3, H, W) view of a reused buffer; valid until the engine ran.
        infos: how each frame was letterboxed.
        pre_ms: time spent letterboxing the batch.
        started_mono: when the engine took the batch (frame age is measured there).
        outputs: the engine's outputs, batch first (None until it ran, or on failure).
        infer_ms: the engine call's time.
        error: why the engine failed on this batch, or None.
    """

    frames: list[Frame]
    detector: Detector
    tensor: npt.NDArray[np.float32]
    infos: list[LetterboxInfo]
    pre_ms: float
    started_mono: float = 0.0
    outputs: list[npt.NDArray[np.float32]] | None = None
    infer_ms: float = 0.0
    error: str | None = field(default=None)


class _Buffer:
    """A (rows, 3, H, W) input tensor and one Letterboxer per row writing into it."""

    def __init__(self, size: tuple[int, int], rows: int) -> None:
        self.tensor = np.empty((rows, 3, size[0], size[1]), dtype=np.float32)
        self.rows = [Letterboxer(size, out=self.tensor[r : r + 1]) for r in range(rows)]


class Preparer:
    """Letterboxes batches, alternating between two buffers.

    Two are enough when the caller prepares a batch only once the previous one has left
    the hand-off slot: the engine then reads one buffer while the other is filled. Each
    row keeps its letterbox geometry, so frames of one size repaint no padding.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._key: tuple[tuple[int, int], int] | None = None
        self._buffers: list[_Buffer] = []
        self._next = 0

    def prepare(self, detector: Detector, frames: list[Frame], rows: int) -> Batch:
        """Letterbox `frames` (at most `rows`) for `detector`'s input into the next buffer."""
        if not 0 < len(frames) <= rows:
            raise ValueError(f"a batch holds 1..{rows} frames, got {len(frames)}")
        key = (detector.info.input_size, rows)
        if key != self._key:  # first batch, or a swap to a model of another input size
            self._buffers = [_Buffer(key[0], rows) for _ in range(2)]
            self._key, self._next = key, 0
        buffer = self._buffers[self._next]
        self._next ^= 1
        start = self._clock()
        tensor = buffer.tensor[: len(frames)]
        try:
            infos = [buffer.rows[k](frame.image)[1] for k, frame in enumerate(frames)]
        except ValueError as err:  # a frame that is no (h, w, 3) uint8 image: counted
            return Batch(frames, detector, tensor, [], 0.0, error=f"letterbox failed: {err}")
        pre_ms = (self._clock() - start) * 1e3
        return Batch(frames, detector, tensor, infos, pre_ms)
