"""JPEG encoding of snapshots: the full frame with the box drawn, the crop, and a copy small
enough for an MQTT message."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from agent.snapshots.choice import Box, padded_crop

Image = npt.NDArray[np.uint8]

BOX_COLOUR = (0, 200, 255)  # BGR amber
FIT_QUALITIES = (70, 50, 35)
FIT_MIN_SIDE = 64


class EncodeError(RuntimeError):
    """OpenCV could not encode or decode a snapshot."""


def encode_jpeg(image: Image, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise EncodeError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()


def annotated(image: Image, box: Box, caption: str) -> Image:
    """A copy of `image` (h, w, 3 BGR) with `box` drawn and `caption` above it."""
    out = image.copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    thick = max(2, round(min(image.shape[:2]) / 300))
    cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, thick)
    scale = max(0.5, min(image.shape[:2]) / 900)
    (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y1 - 4 if y1 - th - base - 4 >= 0 else y2 + th + 4
    cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + base), BOX_COLOUR, -1)
    cv2.putText(out, caption, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1)
    return out


def render(
    image: Image, box: Box, caption: str, quality: int, padding: float
) -> tuple[bytes, bytes]:
    """(full frame with the box drawn, crop around the box), both JPEG."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = padded_crop(box, w, h, padding)
    full = encode_jpeg(annotated(image, box, caption), quality)
    crop = encode_jpeg(np.ascontiguousarray(image[y1:y2, x1:x2]), quality)
    return full, crop


def fit(jpeg: bytes, cap: int) -> bytes:
    """`jpeg` itself when it has at most `cap` bytes; otherwise a re-encoding at lower quality,
    then at half size (repeatedly), that fits. Raises EncodeError when nothing fits."""
    if len(jpeg) <= cap:
        return jpeg
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise EncodeError("snapshot file is not a readable JPEG")
    while min(image.shape[:2]) >= FIT_MIN_SIDE:
        for q in FIT_QUALITIES:
            out = encode_jpeg(image, q)
            if len(out) <= cap:
                return out
        image = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    raise EncodeError(f"snapshot does not fit in {cap} bytes even at {image.shape[1]} px wide")
