"""Pure YOLO pre/post-processing: letterbox, layouts, decoding, NMS, scaling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agent.engines.base import EngineError
from agent.engines.yolo import (
    PAD_VALUE,
    DecodeParams,
    Layout,
    Letterboxer,
    LetterboxInfo,
    box_iou,
    decode,
    detect_layout,
    layout_num_classes,
    letterbox,
    letterbox_geometry,
    nms,
    scale_boxes,
)
from tests.engines.synthetic import (  # literal outputs shared with the detector tests
    E2E_OUT,
    EXPECTED_CLASS,
    EXPECTED_CONF,
    EXPECTED_XYXY,
    FRAME_HW,
    INFO,
    V5_OUT,
    V8_OUT,
)

PARAMS = DecodeParams(conf_threshold=0.25, iou_threshold=0.45, max_detections=100)


# --------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize(
    ("image_hw", "size", "info", "resized_hw"),
    [
        ((576, 768), (320, 320), LetterboxInfo(320 / 768, 0.0, 40.0), (240, 320)),  # landscape
        ((768, 576), (320, 320), LetterboxInfo(320 / 768, 40.0, 0.0), (320, 240)),  # portrait
        ((320, 320), (320, 320), LetterboxInfo(1.0, 0.0, 0.0), (320, 320)),  # exact fit
        ((10, 20), (64, 64), LetterboxInfo(3.2, 0.0, 16.0), (32, 64)),  # upscaled
        ((96, 128), (64, 64), INFO, (48, 64)),  # the frame of the literal tests
    ],
)
def test_letterbox_geometry(image_hw, size, info, resized_hw):
    """Scale and padding follow Ultralytics' centred letterbox."""
    got_info, got_hw = letterbox_geometry(image_hw, size)
    assert got_hw == resized_hw
    assert got_info.scale == pytest.approx(info.scale)
    assert (got_info.pad_x, got_info.pad_y) == (info.pad_x, info.pad_y)


def test_letterbox_tensor_layout_and_padding():
    """The tensor is (1,3,H,W) float32 RGB in [0,1] with 114-grey padding bands."""
    image = np.zeros((50, 100, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure blue in BGR
    tensor, info = letterbox(image, (64, 64))
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    top = int(info.pad_y)
    assert top == 16
    body = tensor[0, :, top : top + 32, :]
    np.testing.assert_allclose(body[2], 1.0)  # blue lands in RGB channel 2
    np.testing.assert_allclose(body[:2], 0.0)
    np.testing.assert_allclose(tensor[0, :, :top, :], PAD_VALUE / 255.0, rtol=1e-6)
    np.testing.assert_allclose(tensor[0, :, top + 32 :, :], PAD_VALUE / 255.0, rtol=1e-6)


def test_letterboxer_repaints_padding_when_frame_size_changes():
    """A reused Letterboxer gives the same tensor as a fresh one after the frame shape changes."""
    rng = np.random.default_rng(0)
    portrait = rng.integers(0, 255, (80, 40, 3), dtype=np.uint8)
    landscape = rng.integers(0, 255, (40, 80, 3), dtype=np.uint8)
    lb = Letterboxer((64, 64))
    lb(portrait)
    reused, _ = lb(landscape)
    fresh, _ = letterbox(landscape, (64, 64))
    np.testing.assert_array_equal(reused, fresh)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10), dtype=np.uint8),  # grey, no channel axis
        np.zeros((10, 10, 4), dtype=np.uint8),  # BGRA
        np.zeros((10, 10, 3), dtype=np.float32),  # float image
    ],
)
def test_letterbox_rejects_non_bgr_uint8(image):
    """Anything but (h, w, 3) uint8 is refused with a message."""
    with pytest.raises(ValueError, match="uint8"):
        letterbox(image, (64, 64))


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("shapes", "metadata", "nc", "layout"),
    [
        ([[1, 6, 2100]], {}, 2, Layout.V8),  # yolov8n nc=2 at 320
        ([[1, 84, 8400]], {"end2end": "False"}, 80, Layout.V8),  # COCO yolov8n at 640
        ([[1, 6, -1]], {}, 2, Layout.V8),  # dynamic anchor count
        ([[1, 25200, 85]], {}, 80, Layout.V5),  # YOLOv5 COCO
        ([[1, 300, 6]], {"end2end": "True"}, 80, Layout.END2END),  # YOLO26 / v10 with metadata
        ([[1, 300, 6]], {}, 80, Layout.END2END),  # end2end shape, no metadata
        ([[1, 2100, 6]], {}, 1, Layout.V5),  # v5 with one class is [1, N, 6]
        ([[1, 6, 2100]], {}, None, Layout.V8),  # class count unknown: by proportions
        ([[1, 25200, 85]], {}, None, Layout.V5),  # class count unknown: by proportions
        ([[1, 300, 6]], {}, None, Layout.END2END),  # class count unknown: by proportions
    ],
)
def test_detect_layout(shapes, metadata, nc, layout):
    """Each output shape (with metadata and class count) maps to its layout."""
    assert detect_layout(shapes, metadata, nc) is layout


@pytest.mark.parametrize(
    ("shapes", "metadata", "nc", "message"),
    [
        ([[1, 1000]], {}, None, r"\[1, 1000\]"),  # an image classifier
        ([[1, 1000]], {"task": "classify"}, None, "task='classify'"),  # classifier with metadata
        ([[1, 38, 8400], [1, 32, 160, 160]], {"task": "segment"}, 2, "not a detection model"),
        ([[1, 84, 8400]], {}, 2, r"\[1, 84, 8400\].*nc=2"),  # 80-class head, 2 names
        ([[1, 300, 7]], {"end2end": "True"}, 2, r"\[1, 300, 7\]"),  # end2end but not 6 wide
        ([[1, 3, 20, 20]], {}, 2, r"\[1, 3, 20, 20\]"),  # 4-D output
        ([[2, 6, 2100]], {}, 2, r"\[2, 6, 2100\]"),  # batch of 2
        ([], {}, 2, "no outputs"),
    ],
)
def test_detect_layout_rejects_with_shapes(shapes, metadata, nc, message):
    """A model fitting no layout fails with a message naming what it found."""
    with pytest.raises(EngineError, match=message):
        detect_layout(shapes, metadata, nc)


@pytest.mark.parametrize(
    ("layout", "shape", "nc"),
    [
        (Layout.V8, (1, 6, 2100), 2),
        (Layout.V5, (1, 25200, 85), 80),
        (Layout.END2END, (1, 300, 6), None),  # not in the shape
    ],
)
def test_layout_num_classes(layout, shape, nc):
    """The class count implied by an output shape."""
    assert layout_num_classes(layout, shape) == nc


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("layout", "output"),
    [
        (Layout.V8, V8_OUT),  # YOLOv8/11
        (Layout.V5, V5_OUT),  # YOLOv5
        (Layout.END2END, E2E_OUT),  # YOLOv10/26
    ],
)
def test_decode_literal_outputs(layout, output):
    """Each layout decodes its literal output to the same boxes in frame pixels."""
    dets = decode([output], layout, 2, INFO, FRAME_HW, PARAMS)
    np.testing.assert_allclose(dets.xyxy, EXPECTED_XYXY, atol=1e-4)
    np.testing.assert_allclose(dets.confidence, EXPECTED_CONF, atol=1e-6)
    np.testing.assert_array_equal(dets.class_id, EXPECTED_CLASS)
    assert dets.xyxy.dtype == np.float32 and dets.class_id.dtype == np.int64


def test_decode_clips_boxes_to_the_frame():
    """A box running off the frame edge is clipped to it."""
    out = np.array([[[62], [60], [10], [20], [0.9], [0.0]]], dtype=np.float32)  # V8, one anchor
    dets = decode([out], Layout.V8, 2, INFO, FRAME_HW, PARAMS)
    np.testing.assert_allclose(dets.xyxy, [[114, 84, 128, 96]], atol=1e-4)


def test_decode_nothing_above_threshold_is_empty():
    """No score above the threshold gives empty Detections."""
    dets = decode([V8_OUT], Layout.V8, 2, INFO, FRAME_HW, DecodeParams(conf_threshold=0.95))
    assert len(dets) == 0 and dets.xyxy.shape == (0, 4)


@pytest.mark.parametrize(
    ("layout", "output"),
    [(Layout.V8, V8_OUT), (Layout.V5, V5_OUT), (Layout.END2END, E2E_OUT)],
)
def test_decode_caps_at_max_detections(layout, output):
    """Only the best max_detections boxes are returned."""
    dets = decode([output], layout, 2, INFO, FRAME_HW, DecodeParams(max_detections=1))
    np.testing.assert_allclose(dets.confidence, [0.9], atol=1e-6)


def test_decode_end2end_rejects_unknown_class_id():
    """An end2end model naming a class beyond nc is an error, not a silent label."""
    out = np.array([[[1, 1, 5, 5, 0.9, 7]]], dtype=np.float32)
    with pytest.raises(EngineError, match=r"\[7\] outside \[0, 2\)"):
        decode([out], Layout.END2END, 2, INFO, FRAME_HW, PARAMS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf_threshold": 1.5}, "conf_threshold"),  # above 1
        ({"iou_threshold": -0.1}, "iou_threshold"),  # negative
        ({"max_detections": 0}, "max_detections"),  # zero
    ],
)
def test_decode_params_validated(kwargs, message):
    """Out-of-range thresholds are refused."""
    with pytest.raises(ValueError, match=message):
        DecodeParams(**kwargs)


# --------------------------------------------------------------------------- NMS


@pytest.mark.parametrize(
    ("classes", "kept"),
    [
        ([0, 0, 0], [0, 2]),  # same class: the overlapping second box goes
        ([0, 1, 0], [0, 1, 2]),  # other class: never suppressed
    ],
)
def test_nms_is_class_aware(classes, kept):
    """NMS suppresses overlaps only within a class."""
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    keep = nms(boxes, scores, np.array(classes, dtype=np.int64), 0.45, 100)
    assert keep.tolist() == kept


@st.composite
def box_sets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,4) valid xyxy boxes, (n,) scores, (n,) classes."""
    n = draw(st.integers(0, 40))
    coords = st.floats(0, 200, allow_nan=False, width=32)
    xy = draw(hnp.arrays(np.float32, (n, 2), elements=coords))
    wh = draw(hnp.arrays(np.float32, (n, 2), elements=st.floats(0.5, 80, width=32)))
    scores = draw(hnp.arrays(np.float32, (n,), elements=st.floats(0, 1, width=32)))
    classes = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, 2)))
    return np.concatenate([xy, xy + wh], axis=1), scores, classes


@settings(max_examples=150, deadline=None)
@given(box_sets(), st.floats(0.1, 0.9))
def test_nms_kept_boxes_do_not_overlap_within_a_class(data, iou_thr):
    """After NMS, no two kept boxes of one class overlap by more than the threshold."""
    boxes, scores, classes = data
    keep = nms(boxes, scores, classes, iou_thr, 1000)
    assert len(set(keep.tolist())) == len(keep)
    assert np.all(np.diff(scores[keep]) <= 0)  # best first
    for i, a in enumerate(keep):
        same = keep[i + 1 :][classes[keep[i + 1 :]] == classes[a]]
        if same.size:
            assert np.all(box_iou(boxes[a], boxes[same]) <= iou_thr + 1e-6)


@settings(max_examples=150, deadline=None)
@given(box_sets(), st.floats(0.1, 0.9))
def test_nms_every_dropped_box_overlaps_a_better_kept_one(data, iou_thr):
    """NMS drops a box only for a kept, higher-scoring box of its class that overlaps it."""
    boxes, scores, classes = data
    keep = nms(boxes, scores, classes, iou_thr, 1000)
    for d in sorted(set(range(len(scores))) - set(keep.tolist())):
        rivals = keep[(classes[keep] == classes[d]) & (scores[keep] >= scores[d])]
        assert rivals.size and np.any(box_iou(boxes[d], boxes[rivals]) > iou_thr)


@settings(max_examples=150, deadline=None)
@given(box_sets(), st.floats(0.1, 0.9), st.integers(1, 50))
def test_nms_matrix_and_row_paths_agree(data, iou_thr, max_det):
    """The IoU-matrix path (few candidates) keeps exactly what the row-by-row path keeps."""
    from agent.engines.yolo import _nms_matrix, _nms_rows

    boxes, scores, classes = data
    if len(scores) == 0:
        return
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (classes.astype(np.float32) * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    by_matrix = _nms_matrix(shifted[order], order, iou_thr, max_det)
    by_rows = _nms_rows(shifted, order, iou_thr, max_det)
    assert by_matrix.tolist() == by_rows.tolist()


def test_nms_many_candidates_takes_the_row_path():
    """Above NMS_MATRIX_MAX candidates the result is still right (one cluster -> one box)."""
    from agent.engines.yolo import NMS_MATRIX_MAX

    n = NMS_MATRIX_MAX + 100
    boxes = np.tile(np.array([[10, 10, 50, 50]], dtype=np.float32), (n, 1))
    boxes[:, 2] += np.linspace(0, 1, n, dtype=np.float32)  # near-identical boxes
    scores = np.linspace(0.3, 0.9, n, dtype=np.float32)
    keep = nms(boxes, scores, np.zeros(n, dtype=np.int64), 0.45, 100)
    assert keep.tolist() == [n - 1]


# --------------------------------------------------------------------------- properties


frame_sizes = st.tuples(st.integers(1, 2000), st.integers(1, 2000))
input_sizes = st.sampled_from([(64, 64), (320, 320), (640, 640), (384, 640)])


@settings(max_examples=100, deadline=None)
@given(
    frame_sizes,
    input_sizes,
    st.sampled_from([Layout.V8, Layout.V5, Layout.END2END]),
    st.integers(1, 60),
    st.integers(0, 2**32 - 1),
)
def test_decoded_boxes_stay_inside_the_frame(frame_hw, size, layout, n, seed):
    """Whatever the network outputs, decoded boxes lie within the original frame."""
    rng = np.random.default_rng(seed)
    nc = 3
    boxes = rng.uniform(-200, 900, (n, 4)).astype(np.float32)
    scores = rng.uniform(0, 1, (n, nc + 1)).astype(np.float32)
    if layout is Layout.V8:
        out = np.concatenate([boxes, scores[:, :nc]], axis=1).T[None]
    elif layout is Layout.V5:
        out = np.concatenate([boxes, scores], axis=1)[None]
    else:
        cls = rng.integers(0, nc, (n, 1)).astype(np.float32)
        out = np.concatenate([boxes, scores[:, :1], cls], axis=1)[None]
    info, _ = letterbox_geometry(frame_hw, size)
    dets = decode([np.ascontiguousarray(out)], layout, nc, info, frame_hw, PARAMS)
    h, w = frame_hw
    assert np.all(dets.xyxy[:, 0::2] >= 0) and np.all(dets.xyxy[:, 0::2] <= w)
    assert np.all(dets.xyxy[:, 1::2] >= 0) and np.all(dets.xyxy[:, 1::2] <= h)


@settings(max_examples=200, deadline=None)
@given(frame_sizes, input_sizes, st.lists(st.floats(0, 1), min_size=4, max_size=4))
def test_letterbox_then_scale_round_trips_a_box(frame_hw, size, fractions):
    """A box mapped into the letterboxed input and scaled back is the original box."""
    h, w = frame_hw
    fx1, fx2 = sorted(fractions[:2])
    fy1, fy2 = sorted(fractions[2:])
    box = np.array([[fx1 * w, fy1 * h, fx2 * w, fy2 * h]], dtype=np.float64)
    info, _ = letterbox_geometry(frame_hw, size)
    in_input = box * info.scale + np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y])
    back = scale_boxes(in_input.astype(np.float32), info, frame_hw)
    np.testing.assert_allclose(back, box, atol=1e-3 * max(h, w) + 1e-3)


@settings(max_examples=100, deadline=None)
@given(frame_sizes, input_sizes)
def test_letterboxed_image_fits_the_input(frame_hw, size):
    """The resized frame plus its padding never exceeds the network input."""
    info, (rh, rw) = letterbox_geometry(frame_hw, size)
    assert info.pad_x >= 0 and info.pad_y >= 0
    assert info.pad_x + rw <= size[1] and info.pad_y + rh <= size[0]
    assert rh >= 1 and rw >= 1
