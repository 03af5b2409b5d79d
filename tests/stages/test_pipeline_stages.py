"""The three stage threads together: nothing is taken ahead of a busy engine, order holds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.contracts.payloads import DetectionMessage
from agent.engines.detector import Detector
from agent.engines.model_loading import load_manifest
from agent.engines.ort import OnnxRuntimeConfig, OnnxRuntimeEngine
from agent.pipeline import Pipeline, PipelineSettings
from agent.stages.config import BatchConfig
from agent.types import Frame, ModelInfo
from tests.helpers.daemon import DEMO_MANIFEST, DEMO_MODEL
from tests.helpers.polling import wait_until


class GatedEngine(OnnxRuntimeEngine):
    """The real ONNX Runtime engine, held at the door of each call until the test opens it."""

    def __init__(self) -> None:
        super().__init__(OnnxRuntimeConfig(threads=1, warmup_runs=0))
        self.gate = threading.Event()
        self.calls = 0

    def infer(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        self.calls += 1
        self.gate.wait(10)
        return super().infer(tensor)


class CountingCameras:
    """Two cameras that always have a new frame; counts what the loop took."""

    def __init__(self, image: npt.NDArray[np.uint8]) -> None:
        self.image = image
        self.taken: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def next_frame(self, timeout: float) -> Frame | None:
        with self._lock:
            n = len(self.taken)
            camera = ("cam-a", "cam-b")[n % 2]
            self.taken.append((camera, n // 2))
        return Frame(camera, self.image, time.time(), time.monotonic(), n // 2)


def by_camera(got: list[DetectionMessage]) -> dict[str, list[DetectionMessage]]:
    """The messages of each of the two cameras, in the order they were submitted."""
    return {c: [m for m in got if m.camera == c] for c in ("cam-a", "cam-b")}


def test_a_busy_engine_holds_at_most_one_batch_in_waiting_and_order_holds() -> None:
    """While the engine is stuck, the loop takes exactly one batch beyond the running one
    (newest-frame semantics); once it runs, every taken frame is published in order."""
    engine = GatedEngine()
    io = engine.load(DEMO_MODEL)
    manifest = load_manifest(DEMO_MANIFEST)
    info = ModelInfo("m", 1, manifest.sha256, (320, 320), tuple(manifest.class_names))
    feed = CountingCameras(np.full((240, 320, 3), 90, np.uint8))
    got: list[DetectionMessage] = []
    settings = PipelineSettings("dev", "b007b007")

    def submit(_c: str, _s: int, payload: bytes) -> bool:
        got.append(DetectionMessage.model_validate_json(payload))
        return True

    pipe = Pipeline(settings, feed, Detector(engine, io, info), submit, lambda *_a: None)
    pipe.start()
    try:
        wait_until(lambda: engine.calls >= 1, 10)
        time.sleep(0.5)  # the engine is stuck in its first call: does prepare run ahead?
        assert len(feed.taken) == 2  # the frame in the engine, and one waiting in the slot
        engine.gate.set()
        wait_until(lambda: len(got) >= 10, 10)
    finally:
        assert pipe.stop(10)
    for mine in by_camera(got).values():
        assert [m.seq for m in mine] == list(range(len(mine)))
    assert len(got) >= 10 and pipe.window.total_errors == 0


def test_batch_max_is_cut_to_a_static_model() -> None:
    """The demo model has a static batch of 1: batch.max 4 runs one frame per call."""
    engine = OnnxRuntimeEngine(OnnxRuntimeConfig(threads=1, warmup_runs=0))
    io = engine.load(DEMO_MODEL)
    manifest = load_manifest(DEMO_MANIFEST)
    info = ModelInfo("m", 1, manifest.sha256, (320, 320), tuple(manifest.class_names))
    detector = Detector(engine, io, info)
    assert detector.batch_limit == 1 and detector.batch_size(4) == 1
    feed = CountingCameras(np.full((240, 320, 3), 90, np.uint8))
    got: list[str] = []
    pipe = Pipeline(
        PipelineSettings("dev", "b007b007"),
        feed,
        detector,
        lambda c, _s, _p: got.append(c) is None,
        lambda *_a: None,
        batch=BatchConfig(max=4, max_wait_ms=20),
    )
    pipe.start()
    wait_until(lambda: len(got) >= 6, 10)
    assert pipe.stop(10)
    assert len(got) >= 6 and pipe.window.total_errors == 0


def test_a_swap_under_batching_lands_between_two_batches(tmp_path: Path) -> None:
    """batch.max 2 on a dynamic-batch model, swapped mid-stream: per camera seq has no gap
    and the version changes once, never back."""
    import onnx

    from agent.engines.detector import load_detector
    from agent.engines.model_loading import file_sha256
    from tests.test_batching import _recipe

    model = onnx.load(str(DEMO_MODEL))
    _recipe().free_batch(model)
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    base = load_manifest(DEMO_MANIFEST).model_copy(
        update={"sha256": file_sha256(path), "length": path.stat().st_size}
    )

    def load(version: int) -> Detector:
        manifest = base.model_copy(update={"version": version})
        return load_detector(path, OnnxRuntimeConfig(threads=1), manifest=manifest)

    got: list[DetectionMessage] = []
    feed = CountingCameras(np.full((240, 320, 3), 90, np.uint8))
    pipe = Pipeline(
        PipelineSettings("dev", "b007b007"),
        feed,
        load(1),
        lambda _c, _s, p: got.append(DetectionMessage.model_validate_json(p)) is None,
        lambda *_a: None,
        batch=BatchConfig(max=2, max_wait_ms=20),
    )
    pipe.start()
    try:
        wait_until(lambda: len(got) >= 6, 20)
        pipe.swap(load(2), timeout=10)
        n = len(got)
        wait_until(lambda: len(got) >= n + 6, 20)
    finally:
        assert pipe.stop(10)
    for mine in by_camera(got).values():
        assert [m.seq for m in mine] == list(range(len(mine)))
        versions = [m.model.version for m in mine]
        switch = versions.index(2)
        assert set(versions[:switch]) == {1} and set(versions[switch:]) == {2}
    assert pipe.window.total_errors == 0 and pipe.swap_count == 1
