"""Batching across cameras in the real daemon: same frame -> same boxes as batch 1."""

from __future__ import annotations

import importlib.util
import re
import signal
from pathlib import Path

import cv2
import onnx
import pytest

from agent.contracts.payloads import DetectionMessage
from agent.engines.detector import load_detector
from agent.engines.model_loading import load_manifest
from agent.engines.ort import OnnxRuntimeConfig
from agent.pipeline import PipelineSettings, build_message
from agent.types import Frame, Timings
from tests.helpers.broker import Mosquitto
from tests.helpers.daemon import (
    DEMO_CLIP,
    DEMO_MANIFEST,
    DEMO_MODEL,
    REPO,
    DaemonProcess,
    demo_config,
)
from tests.helpers.mqtt import Recorder

DEV = "dev-batch"
CAMERAS = {"cam-a": 40, "cam-b": 120, "cam-c": 200}  # camera -> frame of the demo clip it shows
PER_CAMERA = 8


def _recipe():  # noqa: ANN202
    path = REPO / "engines" / "recipes" / "dynamic_batch.py"
    spec = importlib.util.spec_from_file_location("dynamic_batch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _still_clip(index: int, path: Path) -> Path:
    """A 3-frame MJPG clip repeating frame `index` of the demo clip (10 fps)."""
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok
    h, w = image.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for _ in range(3):
        out.write(image)
    out.release()
    return path


def _expected(clip: Path) -> list[list[dict]]:
    """The batch-1 detections of each frame of `clip` with the static demo model (OpenCV's
    MJPG writer does not encode a repeated image identically, so each frame has its own)."""
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    images = []
    while (got := cap.read())[0]:
        images.append(got[1])
    cap.release()
    manifest = load_manifest(DEMO_MANIFEST)
    settings = PipelineSettings("d", "b007b007")
    result = []
    with load_detector(DEMO_MODEL, OnnxRuntimeConfig(threads=1), manifest=manifest) as det:
        for image in images:
            dets, _ = det.detect(image)
            frame = Frame("x", image, 0.0, 0.0, 0)
            msg = build_message(settings, frame, 0, dets, Timings(0, 0, 0), det.info, False)
            result.append([d.model_dump() for d in msg.detections])
    return result


def test_batched_cameras_get_the_boxes_of_batch_one_in_seq_order(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """3 cameras, batch.max 4, dynamic demo model: every message has the batch-1 boxes of a
    frame of its own camera; seq per camera 0, 1, 2, ... with no gap; engine calls took
    more than one frame."""
    model = onnx.load(str(DEMO_MODEL))
    _recipe().free_batch(model)
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save(model, str(dynamic))
    manifest = tmp_path / "dynamic.manifest.json"
    _recipe().write_manifest(dynamic, DEMO_MANIFEST, manifest)
    clips = {cam: _still_clip(i, tmp_path / f"{cam}.avi") for cam, i in CAMERAS.items()}
    expected = {cam: _expected(clip) for cam, clip in clips.items()}
    assert all(len(e) == 3 and all(e) for e in expected.values())
    assert len({str(e) for cam in expected.values() for e in cam}) >= 3  # cameras differ
    cameras = [
        {"id": cam, "source": {"type": "file", "path": str(clip), "loop": True, "pace": True}}
        for cam, clip in clips.items()
    ]
    cfg = demo_config(tmp_path / "state", mosquitto.port, device=DEV, cameras=cameras)
    cfg["model"].update(path=str(dynamic), manifest=str(manifest))
    cfg["batch"] = {"max": 4, "max_wait_ms": 60}
    recorder = Recorder(mosquitto.port, [f"edge/{DEV}/cameras/+/detections"])
    try:
        with DaemonProcess(tmp_path / "d", cfg) as d:

            def enough(ms: list) -> bool:
                return all(sum(f"/{c}/" in m.topic for m in ms) >= PER_CAMERA for c in CAMERAS)

            recorder.wait_for(enough, timeout=60)
            d.signal(signal.SIGTERM)
            assert d.wait(20) == 0
            log = d.log()
    finally:
        recorder.close()
    msgs = [DetectionMessage.model_validate_json(m.payload) for m in recorder.messages]
    for cam in CAMERAS:
        mine = [m for m in msgs if m.camera == cam]
        assert [m.seq for m in mine] == list(range(len(mine)))
        for m in mine:
            got = [d.model_dump() for d in m.detections]
            assert got in expected[cam], f"{cam} seq {m.seq}: not a frame of its clip"
    stopped = re.search(r'"frames": (\d+), "batches": (\d+), "rows": (\d+)', log)
    if stopped is None:
        pytest.fail(f"no 'inference stopped' line in the log:\n{log[-2000:]}")
    frames, batches, rows = (int(g) for g in stopped.groups())
    assert rows == 4 and frames > batches  # batches of more than one frame really ran
