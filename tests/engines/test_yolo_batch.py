"""Batched decoding and NMS: a batch of N frames gives what N single-frame calls give."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.engines.yolo import (
    NMS_MATRIX_MAX,
    DecodeParams,
    Layout,
    LetterboxInfo,
    decode,
    decode_batch,
    letterbox_geometry,
    nms,
)
from tests.engines.synthetic import (
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
EMPTY_V8 = np.zeros_like(V8_OUT)  # nothing scores above the threshold


@pytest.mark.parametrize(
    ("layout", "output"),
    [(Layout.V8, V8_OUT), (Layout.V5, V5_OUT), (Layout.END2END, E2E_OUT)],
)
def test_literal_batch_decodes_each_row_as_its_own_frame(layout, output):
    """Three rows of the literal output; row 1 belongs to a frame that was not letterboxed."""
    other_info = LetterboxInfo(scale=1.0, pad_x=0.0, pad_y=0.0)
    batch = np.concatenate([output, output, output], axis=0)
    hws = [FRAME_HW, (64, 64), FRAME_HW]
    dets = decode_batch([batch], layout, 2, [INFO, other_info, INFO], hws, PARAMS)
    for k in (0, 2):
        np.testing.assert_allclose(dets[k].xyxy, EXPECTED_XYXY, atol=1e-4)
        np.testing.assert_allclose(dets[k].confidence, EXPECTED_CONF, atol=1e-6)
        assert dets[k].class_id.tolist() == EXPECTED_CLASS.tolist()
    # row 1: the same network output, but the frame was not scaled: boxes in input pixels
    np.testing.assert_allclose(dets[1].xyxy, (EXPECTED_XYXY * 0.5) + [0, 8, 0, 8], atol=1e-4)


def test_a_frame_without_boxes_among_others_stays_empty():
    """An empty row between two full ones: [], and the others unchanged."""
    batch = np.concatenate([V8_OUT, EMPTY_V8, V8_OUT], axis=0)
    dets = decode_batch([batch], Layout.V8, 2, [INFO] * 3, [FRAME_HW] * 3, PARAMS)
    assert [len(d) for d in dets] == [2, 0, 2]


def test_max_detections_applies_per_frame():
    """Two frames each keep their best box when max_detections is 1."""
    batch = np.concatenate([V8_OUT, V8_OUT], axis=0)
    one = DecodeParams(max_detections=1)
    dets = decode_batch([batch], Layout.V8, 2, [INFO] * 2, [FRAME_HW] * 2, one)
    assert [d.confidence.tolist() for d in dets] == [[pytest.approx(0.9)]] * 2


def test_fewer_output_rows_than_frames_is_an_error():
    from agent.engines.base import EngineError

    with pytest.raises(EngineError, match="batch of 2 frames"):
        decode_batch([V8_OUT], Layout.V8, 2, [INFO] * 2, [FRAME_HW] * 2, PARAMS)


def _random_output(rng: np.random.Generator, layout: Layout, n: int, nc: int) -> np.ndarray:
    """One frame's raw output (1, ...) with clustered boxes so that NMS has work."""
    centres = rng.uniform(0, 320, (3, 2))
    cxcy = centres[rng.integers(0, 3, n)] + rng.normal(0, 4, (n, 2))
    wh = rng.uniform(10, 60, (n, 2))
    scores = rng.uniform(0, 1, (n, nc + 1))
    if layout is Layout.V8:
        out = np.concatenate([cxcy, wh, scores[:, :nc]], axis=1).T[None]
    elif layout is Layout.V5:
        out = np.concatenate([cxcy, wh, scores], axis=1)[None]
    else:
        cls = rng.integers(0, nc, (n, 1))
        out = np.concatenate([cxcy - wh / 2, cxcy + wh / 2, scores[:, :1], cls], axis=1)[None]
    return np.ascontiguousarray(out, dtype=np.float32)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([Layout.V8, Layout.V5, Layout.END2END]),
    st.integers(1, 5),
    st.integers(1, 80),
    st.integers(1, 30),
    st.floats(0.1, 0.9),
    st.integers(0, 2**32 - 1),
)
def test_batch_of_n_equals_n_single_calls(layout, count, n, max_det, iou, seed):
    """decode_batch over N frames == decode of each frame alone, box for box, bit for bit."""
    rng = np.random.default_rng(seed)
    nc = 3
    rows = [_random_output(rng, layout, n, nc) for _ in range(count)]
    hws = [(int(rng.integers(100, 1500)), int(rng.integers(100, 1500))) for _ in range(count)]
    infos = [letterbox_geometry(hw, (320, 320))[0] for hw in hws]
    params = DecodeParams(0.3, iou, max_det)
    batch = decode_batch([np.concatenate(rows, axis=0)], layout, nc, infos, hws, params)
    for k in range(count):
        single = decode([rows[k]], layout, nc, infos[k], hws[k], params)
        np.testing.assert_array_equal(batch[k].xyxy, single.xyxy)
        np.testing.assert_array_equal(batch[k].confidence, single.confidence)
        np.testing.assert_array_equal(batch[k].class_id, single.class_id)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 4), st.integers(0, 120), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_nms_over_images_equals_nms_per_image(count, n, max_det, seed):
    """nms with `images` keeps, per image, exactly what nms of that image alone keeps."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2)).astype(np.float32)], axis=1)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    classes = rng.integers(0, 2, n).astype(np.int64)
    images = np.sort(rng.integers(0, count, n)).astype(np.int64)
    keep = nms(boxes, scores, classes, 0.5, max_det, images)
    for k in range(count):
        mine = np.flatnonzero(images == k)
        alone = mine[nms(boxes[mine], scores[mine], classes[mine], 0.5, max_det)]
        assert keep[images[keep] == k].tolist() == alone.tolist()


def test_many_candidates_over_two_images_take_the_row_path():
    """Above NMS_MATRIX_MAX candidates: one cluster per image -> one box per image."""
    n = NMS_MATRIX_MAX // 2 + 50
    boxes = np.tile(np.array([[10, 10, 50, 50]], dtype=np.float32), (2 * n, 1))
    boxes[:, 2] += np.tile(np.linspace(0, 1, n, dtype=np.float32), 2)
    scores = np.tile(np.linspace(0.3, 0.9, n, dtype=np.float32), 2)
    images = np.repeat(np.array([0, 1], dtype=np.int64), n)
    keep = nms(boxes, scores, np.zeros(2 * n, dtype=np.int64), 0.45, 100, images)
    assert sorted(keep.tolist()) == [n - 1, 2 * n - 1]
