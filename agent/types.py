"""Small validated value types passed between pipeline stages.

One `Detections` type flows from decoding to publishing; one `Frame` type flows from
sources to the inference loop. No positional magic arrays cross a module boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Detections:
    """Detections of one frame, in pixels of the original frame.

    Attributes:
        xyxy: (n, 4) float32 boxes as x1, y1, x2, y2.
        confidence: (n,) float32 scores in [0, 1]; NaN where a model gives no score
            (Florence-2).
        class_id: (n,) int64 class indices into the model's class names.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray

    def __post_init__(self) -> None:
        n = len(self.class_id)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (n, 4), got {self.xyxy.shape}")
        if self.xyxy.shape[0] != n or self.confidence.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(
                "xyxy, confidence and class_id disagree on n: "
                f"{self.xyxy.shape}, {self.confidence.shape}, {self.class_id.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        """Return a Detections holding no boxes."""
        return cls(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            confidence=np.zeros((0,), dtype=np.float32),
            class_id=np.zeros((0,), dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.class_id.shape[0])

    def __getitem__(
        self, index: npt.NDArray[np.bool_] | npt.NDArray[np.int64] | slice
    ) -> Detections:
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
        )


@dataclass(frozen=True)
class Frame:
    """One decoded camera frame.

    Attributes:
        camera: camera id from the config.
        image: (h, w, 3) uint8 BGR pixels.
        captured_at: capture time, seconds since the epoch (UTC wall clock).
        captured_mono: capture time on the monotonic clock, for frame age.
        index: per-reader frame counter (grows by one for each frame the reader decoded).
    """

    camera: str
    image: npt.NDArray[np.uint8]
    captured_at: float
    captured_mono: float
    index: int

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Timings:
    """Per-frame stage latencies in milliseconds."""

    pre: float
    infer: float
    post: float

    @property
    def total(self) -> float:
        return self.pre + self.infer + self.post


@dataclass(frozen=True)
class ModelInfo:
    """Identity and interface of a loaded detection model.

    Attributes:
        name: model name (from the manifest, or the file stem).
        version: integer version, monotonic per name (0 when unknown).
        sha256: hex digest of the artifact file.
        input_size: (height, width) the network expects.
        class_names: class index -> label.
    """

    name: str
    version: int
    sha256: str
    input_size: tuple[int, int]
    class_names: tuple[str, ...] = field(default_factory=tuple)
