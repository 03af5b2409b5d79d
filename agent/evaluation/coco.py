"""Pure conversion: YOLO label lines and our Detections -> COCO ground truth and results.

COCO boxes are [x, y, width, height] in pixels; category ids are class index + 1 (COCO's
ids start at 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.util.labels import parse_box_line


class LabelError(ValueError):
    """A malformed YOLO label line."""


def parse_label_line(line: str, nc: int) -> tuple[int, float, float, float, float]:
    """`class cx cy w h` (normalised) -> (class, cx, cy, w, h); LabelError when malformed."""
    try:
        cls, cx, cy, w, h = parse_box_line(line)
    except ValueError as exc:
        raise LabelError(f"{exc}: {line!r}") from exc
    if not 0 <= cls < nc:
        raise LabelError(f"class {cls} outside 0..{nc - 1}: {line!r}")
    if w <= 0 or h <= 0:
        raise LabelError(f"empty box: {line!r}")
    return cls, cx, cy, w, h


def yolo_to_coco_boxes(
    text: str, width: int, height: int, nc: int
) -> list[tuple[int, list[float]]]:
    """A label file's text -> [(class, [x, y, w, h] in pixels)]."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cls, cx, cy, w, h = parse_label_line(line, nc)
        bw, bh = w * width, h * height
        out.append((cls, [cx * width - bw / 2, cy * height - bh / 2, bw, bh]))
    return out


def coco_ground_truth(
    images: Sequence[tuple[int, str, int, int, str]], names: Sequence[str]
) -> dict[str, Any]:
    """COCO dataset dict from (image id, file name, width, height, label text) per image."""
    annotations: list[dict[str, Any]] = []
    coco_images = []
    for image_id, file_name, width, height, text in images:
        coco_images.append(
            {"id": image_id, "file_name": file_name, "width": width, "height": height}
        )
        for cls, box in yolo_to_coco_boxes(text, width, height, len(names)):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    return {"images": coco_images, "annotations": annotations, "categories": categories}


def coco_results(
    image_id: int, xyxy: Sequence[Sequence[float]], scores: Sequence[float], classes: Sequence[int]
) -> list[dict[str, Any]]:
    """Detections of one image (pixel xyxy, score, class index) -> COCO result entries."""
    return [
        {
            "image_id": image_id,
            "category_id": int(c) + 1,
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
            "score": float(s),
        }
        for b, s, c in zip(xyxy, scores, classes, strict=True)
    ]
