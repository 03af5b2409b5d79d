"""YOLO pre- and post-processing in pure numpy (plus cv2.resize): no I/O, no engine.

Letterbox a BGR frame into the network's NCHW RGB float tensor, recognise which of the
three Ultralytics output layouts a model has, decode its output to boxes, run class-aware
NMS and scale the boxes back to pixels of the original frame.

Layouts (B = batch, 1 per frame or up to the batch size):
    V8       [B, 4+nc, N]  YOLOv8 / YOLO11: cx, cy, w, h then nc class scores per anchor.
    V5       [B, N, 5+nc]  YOLOv5: cx, cy, w, h, objectness then nc class scores.
    END2END  [B, K, 6]     NMS-free exports (YOLOv10, YOLO26): x1, y1, x2, y2, score, class.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from agent.engines.base import EngineError
from agent.types import Detections

PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_NMS_CANDIDATES = 30000  # most boxes fed to NMS, highest scores first (as Ultralytics)
_INV_255 = np.float32(1.0 / 255.0)


class Layout(enum.Enum):
    """Output layout of a YOLO detection network."""

    V8 = "v8"
    V5 = "v5"
    END2END = "end2end"


@dataclass(frozen=True)
class LetterboxInfo:
    """How a frame was placed in the network input.

    Attributes:
        scale: input pixels per original pixel (same on both axes).
        pad_x: columns of padding left of the image, in input pixels.
        pad_y: rows of padding above the image, in input pixels.
    """

    scale: float
    pad_x: float
    pad_y: float


@dataclass(frozen=True)
class DecodeParams:
    """Post-processing thresholds.

    Attributes:
        conf_threshold: boxes scoring at or below this are dropped.
        iou_threshold: NMS suppresses a box whose IoU with a kept box of its class exceeds this.
        max_detections: most boxes returned per frame.
    """

    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf_threshold <= 1.0:
            raise ValueError(f"conf_threshold must be in [0, 1], got {self.conf_threshold}")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")


# --------------------------------------------------------------------------- letterbox


def letterbox_geometry(
    image_hw: tuple[int, int], size: tuple[int, int]
) -> tuple[LetterboxInfo, tuple[int, int]]:
    """Where a frame of `image_hw` (h, w) lands in an input of `size` (H, W).

    Same arithmetic as Ultralytics' `LetterBox(auto=False, center=True)`.

    Returns:
        The LetterboxInfo and the resized image's (h, w) in input pixels.
    """
    h, w = image_hw
    H, W = size
    if h <= 0 or w <= 0:
        raise ValueError(f"image must be non-empty, got (h, w) = {image_hw}")
    r = min(H / h, W / w)
    new_w, new_h = max(1, int(round(w * r))), max(1, int(round(h * r)))
    dw, dh = (W - new_w) / 2, (H - new_h) / 2
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    return LetterboxInfo(scale=r, pad_x=float(left), pad_y=float(top)), (new_h, new_w)


class Letterboxer:
    """Letterbox frames into one network input size, reusing its buffers between calls.

    The returned tensor is owned by the Letterboxer and overwritten by the next call: use
    it (run the network) before letterboxing the next frame. `letterbox()` is the
    allocation-per-call variant.

    Only the image region of the tensor is written per frame; the padding band is painted
    once per frame size. cv2.resize into a reused buffer, cv2.split into reused planes, then
    one uint8 -> float32 scaling pass per plane straight into the NCHW tensor (BGR -> RGB
    by plane order). This is about 3x cheaper than cv2.dnn.blobFromImage here.
    """

    def __init__(self, size: tuple[int, int], out: npt.NDArray[np.float32] | None = None) -> None:
        """`size` is the network input (H, W); `out`, when given, is the (1, 3, H, W) view
        (e.g. one row of a batch tensor) written instead of a buffer of its own."""
        if len(size) != 2 or size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"input size must be (H, W) > 0, got {size}")
        self.size = (int(size[0]), int(size[1]))
        shape = (1, 3, self.size[0], self.size[1])
        if out is not None and (out.shape != shape or out.dtype != np.float32):
            raise ValueError(f"out must be a {shape} float32 view, got {out.shape} {out.dtype}")
        self._tensor = np.empty(shape, dtype=np.float32) if out is None else out
        self._frame_hw: tuple[int, int] | None = None
        self._info = LetterboxInfo(1.0, 0.0, 0.0)
        self._resized_hw = (0, 0)
        self._resized = np.empty((0, 0, 3), dtype=np.uint8)
        self._planes: list[npt.NDArray[np.uint8]] = []

    def _set_geometry(self, hw: tuple[int, int]) -> None:
        self._info, self._resized_hw = letterbox_geometry(hw, self.size)
        new_h, new_w = self._resized_hw
        self._resized = np.empty((new_h, new_w, 3), dtype=np.uint8)
        self._planes = [np.empty((new_h, new_w), dtype=np.uint8) for _ in range(3)]
        self._tensor.fill(PAD_VALUE / 255.0)  # the padded band moves: repaint it once
        self._frame_hw = hw

    def __call__(
        self, image: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], LetterboxInfo]:
        """Letterbox one frame.

        Args:
            image: (h, w, 3) uint8 BGR.

        Returns:
            (1, 3, H, W) float32 RGB tensor in [0, 1] (reused buffer), and the LetterboxInfo.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (h, w, 3) uint8 image, got {image.shape} {image.dtype}")
        hw = (int(image.shape[0]), int(image.shape[1]))
        if hw != self._frame_hw:
            self._set_geometry(hw)
        new_h, new_w = self._resized_hw
        if (new_h, new_w) == hw:
            resized = image
        else:
            resized = cv2.resize(
                image, (new_w, new_h), dst=self._resized, interpolation=cv2.INTER_LINEAR
            )
        cv2.split(resized, mv=self._planes)
        top, left = int(self._info.pad_y), int(self._info.pad_x)
        region = self._tensor[0, :, top : top + new_h, left : left + new_w]
        for channel in range(3):  # tensor channel 0 is R, i.e. BGR plane 2
            np.multiply(self._planes[2 - channel], _INV_255, out=region[channel], casting="unsafe")
        return self._tensor, self._info


def letterbox(
    image: npt.NDArray[np.uint8], size: tuple[int, int]
) -> tuple[npt.NDArray[np.float32], LetterboxInfo]:
    """Letterbox one frame into a fresh tensor.

    Args:
        image: (h, w, 3) uint8 BGR.
        size: network input (H, W).

    Returns:
        (1, 3, H, W) float32 RGB tensor in [0, 1] with pad value 114/255, and where the
        image landed (LetterboxInfo).
    """
    return Letterboxer(size)(image)


# --------------------------------------------------------------------------- layouts


def _fmt_shapes(shapes: Sequence[Sequence[int]]) -> str:
    return ", ".join("[" + ", ".join(str(d) for d in s) + "]" for s in shapes) or "none"


def detect_layout(
    output_shapes: Sequence[Sequence[int]],
    metadata: Mapping[str, str],
    nc: int | None,
) -> Layout:
    """Recognise a detection network's output layout.

    Args:
        output_shapes: shapes of the network outputs, dynamic dims as -1; the first
            output is the detection tensor.
        metadata: model metadata (Ultralytics keys `task`, `end2end`).
        nc: number of classes when known (from `names` or a manifest); None to guess it
            from the shape.

    Raises:
        EngineError: naming the shapes found, when no layout fits (e.g. a classifier's
            [1, 1000], or a segmentation model).
    """
    task = metadata.get("task")
    if task is not None and task != "detect":
        raise EngineError(
            f"not a detection model: metadata task={task!r}, outputs {_fmt_shapes(output_shapes)}"
        )
    if not output_shapes:
        raise EngineError("model has no outputs")
    shape = tuple(int(d) for d in output_shapes[0])
    expect = "expected one of V8 [1, 4+nc, N], V5 [1, N, 5+nc], end2end [1, K, 6]" + (
        f" with nc={nc}" if nc is not None else ""
    )
    fail = EngineError(
        f"model outputs fit no YOLO detection layout: found {_fmt_shapes(output_shapes)}; {expect}"
    )
    if len(shape) != 3 or shape[0] not in (1, -1):
        raise fail
    _, d1, d2 = shape
    end2end = metadata.get("end2end", "").strip().lower() == "true"
    if end2end:
        if d2 == 6:
            return Layout.END2END
        raise fail
    if nc is not None:
        if nc < 1:
            raise EngineError(f"model has {nc} classes")
        if d1 == 4 + nc:
            return Layout.V8
        if d2 == 5 + nc:
            return Layout.V5
        if d2 == 6 and "end2end" not in metadata:
            return Layout.END2END
        raise fail
    # No class count: go by proportions (anchors outnumber channels).
    if d1 > 4 and (d2 == -1 or d2 > d1):
        return Layout.V8
    if d2 == 6 and d1 != -1 and "end2end" not in metadata:
        return Layout.END2END
    if d2 > 5 and (d1 == -1 or d1 > d2):
        return Layout.V5
    raise fail


def layout_num_classes(layout: Layout, output_shape: Sequence[int]) -> int | None:
    """Number of classes implied by the output shape; None for END2END (not in the shape)."""
    if layout is Layout.V8:
        return int(output_shape[1]) - 4
    if layout is Layout.V5:
        return int(output_shape[2]) - 5
    return None


# --------------------------------------------------------------------------- NMS


def box_iou(
    box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """IoU of one box (4,) xyxy with each of `boxes` (n, 4) xyxy; returns (n,)."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32, copy=False)


def nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    iou_threshold: float,
    max_detections: int,
    images: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """Class-aware greedy non-maximum suppression, over one frame or a batch of frames.

    Boxes of different classes never suppress each other: each class is shifted by
    class_id * (coordinate span + 1) so their boxes cannot overlap. Going down the scores, a
    box is kept unless its IoU with an already kept box exceeds `iou_threshold`.

    With `images` (a batch), boxes of different images never suppress each other, the span
    is each image's own and `max_detections` applies per image: the result for an image is
    exactly what a call with that image's boxes alone returns.

    Up to `NMS_MATRIX_MAX` candidates (the usual case) the IoUs come from one vectorised
    matrix and the greedy pass only reads it; above, each round computes one row.

    Args:
        boxes: (n, 4) float32 xyxy.
        scores: (n,) float32.
        class_ids: (n,) int64.
        images: (n,) int64 index of each box's image in a batch, or None for one image.

    Returns:
        (k,) int64 indices into the inputs, best score first.
    """
    n = boxes.shape[0]
    if n == 0:
        return np.zeros((0,), dtype=np.int64)
    shifted = boxes + (class_ids.astype(np.float32) * _class_span(boxes, images))[:, None]
    order = np.argsort(-scores, kind="stable")
    if n <= NMS_MATRIX_MAX:
        ranked_images = None if images is None else images[order]
        return _nms_matrix(shifted[order], order, iou_threshold, max_detections, ranked_images)
    return _nms_rows(shifted, order, iou_threshold, max_detections, images)


NMS_MATRIX_MAX = 512
"""Most candidates for the IoU-matrix NMS (a 512 x 512 float32 matrix is 1 MiB)."""


def _class_span(
    boxes: npt.NDArray[np.float32], images: npt.NDArray[np.int64] | None
) -> float | npt.NDArray[np.float32]:
    """The class shift unit: coordinate span + 1 of the frame (per box's image in a batch).

    Computed the same way for one image and per image of a batch, so that shifted boxes
    (and so the IoUs) are bit-identical between a batch and single calls.
    """
    if images is None:
        return float(boxes.max() - boxes.min()) + 1.0
    count = int(images.max()) + 1
    hi = np.full(count, -np.inf, dtype=np.float32)
    lo = np.full(count, np.inf, dtype=np.float32)
    np.maximum.at(hi, images, boxes.max(axis=1))
    np.minimum.at(lo, images, boxes.min(axis=1))
    span = (hi - lo).astype(np.float64) + 1.0
    return span.astype(np.float32)[images]


def _nms_matrix(
    ranked: npt.NDArray[np.float32],
    order: npt.NDArray[np.int64],
    iou_threshold: float,
    max_detections: int,
    images: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """Greedy NMS over `ranked` (boxes sorted best first) with all IoUs computed at once.

    `images` (ranked like the boxes) keeps the images of a batch apart, `max_detections`
    per image."""
    x1, y1, x2, y2 = ranked[:, 0], ranked[:, 1], ranked[:, 2], ranked[:, 3]
    area = (x2 - x1) * (y2 - y1)
    iw = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
    ih = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = area[:, None] + area[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        over = np.where(union > 0, inter / union, 0.0) > iou_threshold
    if images is not None:
        over &= images[:, None] == images[None, :]
    per_image = np.zeros(1 if images is None else int(images.max()) + 1, dtype=np.int64)
    img = np.zeros(ranked.shape[0], dtype=np.int64) if images is None else images
    suppressed = np.zeros(ranked.shape[0], dtype=bool)
    keep: list[int] = []
    for i in range(ranked.shape[0]):
        if suppressed[i] or per_image[img[i]] >= max_detections:
            continue
        keep.append(i)
        per_image[img[i]] += 1
        if images is None and len(keep) >= max_detections:
            break
        suppressed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]


def _nms_rows(
    shifted: npt.NDArray[np.float32],
    order: npt.NDArray[np.int64],
    iou_threshold: float,
    max_detections: int,
    images: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """Greedy NMS computing one IoU row per kept box (for many candidates); `images` as in
    `_nms_matrix` but indexed like `shifted`."""
    img = np.zeros(shifted.shape[0], dtype=np.int64) if images is None else images
    per_image = np.zeros(int(img.max()) + 1 if img.size else 1, dtype=np.int64)
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        per_image[img[best]] += 1
        rest = order[1:]
        other = img[rest] != img[best]
        if per_image[img[best]] >= max_detections:
            order = rest[other]  # this image is full: only other images' boxes go on
            continue
        order = rest[other | (box_iou(shifted[best], shifted[rest]) <= iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


# --------------------------------------------------------------------------- decoding


def _cxcywh_to_xyxy(b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(n, 4) cx, cy, w, h -> (n, 4) x1, y1, x2, y2 (new array)."""
    out = np.empty_like(b)
    half_w, half_h = b[:, 2] * 0.5, b[:, 3] * 0.5
    out[:, 0] = b[:, 0] - half_w
    out[:, 1] = b[:, 1] - half_h
    out[:, 2] = b[:, 0] + half_w
    out[:, 3] = b[:, 1] + half_h
    return out


def _top_candidates(
    images: npt.NDArray[np.int64], scores: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    """Positions of the candidates to keep: each image's MAX_NMS_CANDIDATES best (`images`
    ascending, scores aligned), as Ultralytics caps the boxes fed to NMS."""
    if images.size <= MAX_NMS_CANDIDATES:
        return np.arange(images.size)
    bounds = np.searchsorted(images, np.arange(int(images.max()) + 2))
    parts = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if hi - lo <= MAX_NMS_CANDIDATES:
            parts.append(np.arange(lo, hi))
        else:
            best = np.argpartition(-scores[lo:hi], MAX_NMS_CANDIDATES)[:MAX_NMS_CANDIDATES]
            parts.append(lo + best)
    return np.concatenate(parts)


_Candidates = tuple[
    npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]
]
_NO_CANDIDATES: _Candidates = (
    np.zeros((0, 4), dtype=np.float32),
    np.zeros((0,), dtype=np.float32),
    np.zeros((0,), dtype=np.int64),
    np.zeros((0,), dtype=np.int64),
)


def _candidates_v8(out: npt.NDArray[np.float32], nc: int, conf: float) -> _Candidates:
    """(B, 4+nc, N) -> boxes (m, 4) xyxy, scores (m,), classes (m,), images (m,) above
    `conf`, image by image."""
    cls_scores = out[:, 4 : 4 + nc]  # (B, nc, N) view, no transpose copy
    best = cls_scores.max(axis=1)  # (B, N)
    images, anchors = np.nonzero(best > conf)
    if images.size == 0:
        return _NO_CANDIDATES
    scores = best[images, anchors]
    sel = _top_candidates(images, scores)
    images, anchors, scores = images[sel], anchors[sel], scores[sel]
    classes = cls_scores[images, :, anchors].argmax(axis=1).astype(np.int64)  # (m, nc) rows
    boxes = _cxcywh_to_xyxy(out[images, :4, anchors])
    return boxes, scores.astype(np.float32, copy=False), classes, images.astype(np.int64)


def _candidates_v5(out: npt.NDArray[np.float32], nc: int, conf: float) -> _Candidates:
    """(B, N, 5+nc) -> boxes (m, 4) xyxy, scores (m,), classes (m,), images (m,) above
    `conf`, image by image."""
    images, anchors = np.nonzero(out[:, :, 4] > conf)
    rows = out[images, anchors]  # (m, 5+nc)
    cls_scores = rows[:, 5 : 5 + nc] * rows[:, 4:5]
    classes = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(rows.shape[0]), classes]
    keep = np.flatnonzero(scores > conf)
    keep = keep[_top_candidates(images[keep], scores[keep])]
    boxes = _cxcywh_to_xyxy(rows[keep, :4])
    return (
        boxes,
        scores[keep].astype(np.float32, copy=False),
        classes[keep].astype(np.int64),
        images[keep].astype(np.int64),
    )


def scale_boxes(
    boxes: npt.NDArray[np.float32], info: LetterboxInfo, image_hw: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """Map (n, 4) xyxy boxes from input pixels to original-frame pixels, clipped to the frame.

    Modifies and returns `boxes` (float32).
    """
    boxes[:, [0, 2]] -= info.pad_x
    boxes[:, [1, 3]] -= info.pad_y
    boxes /= info.scale
    h, w = image_hw
    np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
    return boxes


def _detections(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    classes: npt.NDArray[np.int64],
    info: LetterboxInfo,
    image_hw: tuple[int, int],
) -> Detections:
    """Detections of one frame from its kept boxes in input pixels."""
    if boxes.shape[0] == 0:
        return Detections.empty()
    boxes = scale_boxes(boxes.astype(np.float32, copy=False), info, image_hw)
    return Detections(
        xyxy=np.ascontiguousarray(boxes, dtype=np.float32),
        confidence=np.ascontiguousarray(scores, dtype=np.float32),
        class_id=np.ascontiguousarray(classes, dtype=np.int64),
    )


def _decode_end2end(
    pred: npt.NDArray[np.float32],
    nc: int,
    info: LetterboxInfo,
    image_hw: tuple[int, int],
    params: DecodeParams,
) -> Detections:
    """One frame's (K, 6) NMS-free rows: only threshold, sort, cap."""
    rows = pred[pred[:, 4] > params.conf_threshold]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")[: params.max_detections]]
    classes = rows[:, 5].astype(np.int64)
    if classes.size and (classes.min() < 0 or classes.max() >= nc):
        raise EngineError(f"model gave class ids {sorted(set(classes.tolist()))} outside [0, {nc})")
    boxes = rows[:, :4].astype(np.float32, copy=True)
    scores = rows[:, 4].astype(np.float32, copy=True)
    return _detections(boxes, scores, classes, info, image_hw)


def decode_batch(
    outputs: Sequence[npt.NDArray[np.float32]],
    layout: Layout,
    nc: int,
    infos: Sequence[LetterboxInfo],
    image_hws: Sequence[tuple[int, int]],
    params: DecodeParams,
) -> list[Detections]:
    """Turn the raw outputs of one batch into Detections per frame, in its frame's pixels.

    Candidate selection and NMS run once over the whole batch (vectorised); frame k's result
    equals `decode` of row k alone.

    Args:
        outputs: network outputs; the first is the detection tensor in `layout`, batch first.
        layout: the model's output layout (see `detect_layout`).
        nc: number of classes.
        infos: how each frame was letterboxed (row k of the batch is frame k).
        image_hws: original (h, w) of each frame.
        params: thresholds and max detections (per frame).

    Raises:
        EngineError: fewer output rows than frames, or an END2END model gave a class id
            outside [0, nc).
    """
    count = len(infos)
    out = outputs[0]
    if out.shape[0] < count or len(image_hws) != count:
        raise EngineError(
            f"batch of {count} frames ({len(image_hws)} sizes) but output {list(out.shape)}"
        )
    if layout is Layout.END2END:
        return [_decode_end2end(out[k], nc, infos[k], image_hws[k], params) for k in range(count)]
    pick = _candidates_v8 if layout is Layout.V8 else _candidates_v5
    boxes, scores, classes, images = pick(out[:count], nc, params.conf_threshold)
    if boxes.shape[0] == 0:
        return [Detections.empty() for _ in range(count)]
    groups = images if count > 1 else None  # one frame: the plain path, no image mask
    keep = nms(boxes, scores, classes, params.iou_threshold, params.max_detections, groups)
    kept_images = images[keep]
    result = []
    for k in range(count):
        mine = keep[kept_images == k]  # still best first
        result.append(_detections(boxes[mine], scores[mine], classes[mine], infos[k], image_hws[k]))
    return result


def decode(
    outputs: Sequence[npt.NDArray[np.float32]],
    layout: Layout,
    nc: int,
    info: LetterboxInfo,
    image_hw: tuple[int, int],
    params: DecodeParams,
) -> Detections:
    """Turn raw network outputs of one frame (batch 1) into Detections in its pixels.

    Args:
        outputs: network outputs; the first is the detection tensor in `layout`.
        layout: the model's output layout (see `detect_layout`).
        nc: number of classes.
        info: how the frame was letterboxed.
        image_hw: original frame (h, w).
        params: thresholds and max detections.

    Raises:
        EngineError: an END2END model gave a class id outside [0, nc).
    """
    return decode_batch(outputs, layout, nc, [info], [image_hw], params)[0]
