"""Pictures of the gateway's pages, drawn with Pillow (the gateway loads no OpenCV): the Live
page's latest detections as boxes with their labels on a plain canvas of the frame's size (a
schematic, said so in the picture: the gateway has no frame of that moment; the device's
snapshots are shown beside it as they are), and the review grid's labelled thumbnails."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

MAX_WIDTH = 640
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


def annotated_png(detections: Sequence[dict[str, Any]], frame: tuple[int, int]) -> bytes:
    """PNG of `detections` (boxes in the frame's pixels) on a canvas of the frame's size."""
    img = Image.new("RGB", (max(1, frame[0]), max(1, frame[1])), "#2b2b2b")
    scale = min(1.0, MAX_WIDTH / img.width)
    if scale < 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)))
    draw = ImageDraw.Draw(img)
    for i, d in enumerate(detections):
        x1, y1, x2, y2 = (float(v) for v in d.get("box", (0, 0, 0, 0)))
        box = (x1 * scale, y1 * scale, x2 * scale, y2 * scale)
        colour = PALETTE[int(d.get("class_id", i)) % len(PALETTE)]
        draw.rectangle(box, outline=colour, width=2)
        conf = d.get("confidence")
        text = f"{d.get('label', '?')}" + ("" if conf is None else f" {conf:.2f}")
        draw.text((box[0] + 3, max(0.0, box[1] - 12)), text, fill=colour)
    draw.text((6, 6), "schematic: the latest boxes on a blank frame", fill="#dddddd")
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def labelled_thumbnail(
    jpeg_path: str,
    boxes: Sequence[tuple[int, list[float]]],
    class_names: Sequence[str],
    width: int = 320,
) -> bytes:
    """PNG thumbnail of an intake JPEG with its YOLO boxes (normalised cx cy w h) numbered and
    named, as the review grid shows them."""
    with Image.open(jpeg_path) as src:
        img = src.convert("RGB")
    scale = min(1.0, width / img.width)
    if scale < 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)))
    draw = ImageDraw.Draw(img)
    for index, (class_id, (cx, cy, w, h)) in enumerate(boxes):
        box = (
            (cx - w / 2) * img.width,
            (cy - h / 2) * img.height,
            (cx + w / 2) * img.width,
            (cy + h / 2) * img.height,
        )
        colour = PALETTE[class_id % len(PALETTE)]
        name = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        draw.rectangle(box, outline=colour, width=2)
        draw.text((box[0] + 3, max(0.0, box[1] - 12)), f"{index}: {name}", fill=colour)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
