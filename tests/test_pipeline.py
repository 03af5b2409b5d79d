"""The inference loop: message building, the watchdog decision, and between-frame swaps."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent.config import CameraConfig
from agent.contracts.payloads import DetectionMessage
from agent.daemon import watchdog_ok
from agent.engines.detector import load_detector
from agent.engines.model_loading import load_manifest
from agent.engines.ort import OnnxRuntimeConfig
from agent.pipeline import Pipeline, PipelineSettings, build_message
from agent.sources.config import FileSourceConfig
from agent.sources.reader import ReaderGroup
from agent.types import Detections, Frame, ModelInfo, Timings
from tests.helpers.daemon import DEMO_CLIP, DEMO_MANIFEST, DEMO_MODEL
from tests.helpers.models import failing_yolo
from tests.ota.models import overconfident


@pytest.mark.parametrize(
    ("now", "loop", "frame", "states", "expected"),
    [
        (10.0, 9.9, 9.5, ["streaming"], True),  # frames flowing
        (10.0, 9.9, 2.0, ["streaming"], False),  # loop alive, streaming camera, no frame: wedged
        (10.0, 2.0, 9.9, ["streaming"], False),  # loop thread stuck (e.g. inside infer)
        (10.0, 9.9, 2.0, ["backoff"], True),  # nothing to process: every camera in backoff
        (10.0, 9.9, 2.0, ["backoff", "stalled"], True),  # no camera streaming
        (10.0, 9.9, 2.0, ["backoff", "streaming"], False),  # one camera streams but no progress
        (10.0, 2.0, 2.0, ["backoff"], False),  # loop stuck even though cameras are down
    ],
)
def test_watchdog_decision(
    now: float, loop: float, frame: float, states: list[str], expected: bool
) -> None:
    """Pings only while the loop turns and frames flow, or nothing is streaming."""
    assert watchdog_ok(now, loop, frame, states, progress_timeout_s=5.0) is expected


def test_build_message_maps_detections_and_validates() -> None:
    """A YOLO message carries labels, boxes, model identity and latency, and validates."""
    info = ModelInfo("m", 3, "a" * 64, (320, 320), ("person", "car"))
    dets = Detections(
        xyxy=np.array([[1, 2, 30, 40], [5, 6, 7, 8]], np.float32),
        confidence=np.array([0.9, 0.4], np.float32),
        class_id=np.array([1, 0], np.int64),
    )
    frame = Frame("cam-1", np.zeros((48, 64, 3), np.uint8), 1_700_000_000.5, 0.0, 7)
    msg = build_message(
        PipelineSettings("dev", "b007b007"), frame, 5, dets, Timings(1, 2, 3), info, hard=True
    )
    again = DetectionMessage.model_validate_json(msg.model_dump_json(by_alias=True))
    assert again.seq == 5 and again.hard and again.source == "yolo"
    assert [d.label for d in again.detections] == ["car", "person"]
    assert again.detections[0].box == (1.0, 2.0, 30.0, 40.0)
    assert again.latency_ms.total == 6
    assert again.ts == "2023-11-14T22:13:20.500Z"
    assert (again.frame.width, again.frame.height) == (64, 48)
    assert json.loads(msg.model_dump_json(by_alias=True))["schema"] == "edge.detections/1"


def _detector(version: int):  # noqa: ANN202
    manifest = load_manifest(DEMO_MANIFEST).model_copy(update={"version": version})
    return load_detector(DEMO_MODEL, OnnxRuntimeConfig(threads=1), manifest=manifest)


def test_swap_happens_between_frames_without_a_gap(tmp_path: Path) -> None:
    """A swap mid-stream: seq stays consecutive; the version changes between two messages."""
    cam = CameraConfig(id="cam-a", source=FileSourceConfig(path=DEMO_CLIP, loop=True, pace=True))
    group = ReaderGroup.from_configs([cam])
    got: list[DetectionMessage] = []
    lock = threading.Lock()

    def submit(_camera: str, _seq: int, payload: bytes) -> bool:
        with lock:
            got.append(DetectionMessage.model_validate_json(payload))
        return True

    old = _detector(1)
    pipe = Pipeline(PipelineSettings("dev", "b007b007"), group, old, submit, lambda *_a: None)
    seen: list[int] = []
    # the daemon's listener republishes status, which reads the active model: no deadlock
    pipe.on_model_change = lambda _info: seen.append(pipe.active_detector().info.version)
    group.start()
    pipe.start()
    try:
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        new = _detector(2)
        returned = pipe.swap(new, timeout=10)
        assert returned is old.info
        n = len(got)
        while len(got) < n + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pipe.stop(5)
        group.stop(5)
    versions = [m.model.version for m in got]
    assert [m.seq for m in got] == list(range(len(got)))
    switch = versions.index(2)
    assert set(versions[:switch]) == {1} and set(versions[switch:]) == {2}
    assert pipe.window.total_errors == 0
    assert seen == [2]


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: failing_yolo(tmp / "fail.onnx"),  # ONNX Runtime raises on every frame
        lambda tmp: overconfident(
            DEMO_MODEL, tmp / "over.onnx"
        ),  # scores above 1: no valid payload
    ],
    ids=["runtime-error", "scores-above-1"],
)
def test_inference_errors_are_counted_not_fatal(tmp_path: Path, make) -> None:  # noqa: ANN001
    """A model that fails or emits impossible scores on every frame is counted; the loop goes on."""
    broken = load_detector(make(tmp_path), OnnxRuntimeConfig(threads=1, warmup_runs=0))
    cam = CameraConfig(id="cam-a", source=FileSourceConfig(path=DEMO_CLIP, loop=True, pace=False))
    group = ReaderGroup.from_configs([cam])
    sent: list[int] = []

    def submit(_camera: str, seq: int, _payload: bytes) -> bool:
        sent.append(seq)
        return True

    pipe = Pipeline(PipelineSettings("dev", "b007b007"), group, broken, submit, lambda *_a: None)
    group.start()
    pipe.start()
    try:
        deadline = time.monotonic() + 20
        while pipe.window.total_errors < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipe.running
    finally:
        pipe.stop(5)
        group.stop(5)
        broken.close()
    assert pipe.window.total_errors >= 3 and sent == []


class _NoFrames:
    """A feed with no camera: the loop idles, swaps apply directly."""

    def next_frame(self, timeout: float) -> Frame | None:
        time.sleep(min(timeout, 0.01))
        return None


def _closed(detector) -> bool:  # noqa: ANN001
    """A closed detector's engine refuses to run."""
    from agent.engines.base import EngineError

    blank = np.zeros((1, 3, 320, 320), np.float32)
    try:
        detector.engine.infer(blank)
    except EngineError:
        return True
    return False


def test_the_pipeline_closes_what_it_replaces_and_holds() -> None:
    """The pipeline owns detectors: a swap closes the old one, stop closes the active one."""
    old, new = _detector(1), _detector(2)
    pipe = Pipeline(PipelineSettings("dev", "boot"), _NoFrames(), old, lambda *_a: True, _detector)
    pipe.start()
    try:
        pipe.swap(new, timeout=10)
        assert _closed(old) and not _closed(new)
    finally:
        pipe.stop(5)
    assert _closed(new)


def test_a_discarded_candidate_is_closed_the_active_one_refused() -> None:
    """`discard` closes a candidate that never got in and refuses the installed detector."""
    active, candidate = _detector(1), _detector(2)
    pipe = Pipeline(
        PipelineSettings("dev", "boot"), _NoFrames(), active, lambda *_a: True, _detector
    )
    pipe.discard(candidate)
    assert _closed(candidate)
    with pytest.raises(ValueError, match="installed"):
        pipe.discard(active)
    assert not _closed(active)
    pipe.stop(5)
