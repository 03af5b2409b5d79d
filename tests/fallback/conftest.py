"""Fixtures of the fallback tests: the tiny Florence-2, its ONNX exports, YOLO messages."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from agent.contracts.payloads import DetectionMessage, FrameSize, Latency, ModelRef, rfc3339_ms
from agent.types import Detections, Frame
from tests.fallback.tiny_florence import CLASS_NAMES, cached_tiny_florence

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny random Florence-2 in transformers' layout (built once, cached in /tmp)."""
    return cached_tiny_florence()


def _cached_export(model: Path) -> tuple[Path, Path]:
    from agent.fallback.export import export_onnx, quantize_int8

    key = hashlib.sha256(
        (REPO / "agent/fallback/export.py").read_bytes() + str(model).encode()
    ).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"edge-agent-tiny-florence-onnx-{key}"
    fp32, int8 = root / "tiny-onnx", root / "tiny-onnx-int8"
    if (int8 / "florence_onnx.json").is_file():
        return fp32, int8
    tmp = Path(tempfile.mkdtemp(prefix="export-", dir=tempfile.gettempdir()))
    export_onnx(model, tmp / "tiny-onnx")
    quantize_int8(tmp / "tiny-onnx", tmp / "tiny-onnx-int8")
    root.mkdir(exist_ok=True)
    for d in ("tiny-onnx", "tiny-onnx-int8"):
        if not (root / d).exists():
            os.rename(tmp / d, root / d)
    shutil.rmtree(tmp, ignore_errors=True)
    return fp32, int8


@pytest.fixture(scope="session")
def onnx_exports(tiny_model: Path) -> tuple[Path, Path]:
    """(fp32, int8) ONNX exports of the tiny model, made by the production exporter (cached)."""
    return _cached_export(tiny_model)


@pytest.fixture
def image() -> np.ndarray:
    """A (60, 96, 3) uint8 BGR test frame with some structure."""
    rs = np.random.RandomState(3)
    img = rs.randint(0, 60, (60, 96, 3), dtype=np.uint8)
    img[10:40, 20:50] = (30, 200, 90)
    return img


def make_frame(img: np.ndarray, camera: str = "cam-1", index: int = 0) -> Frame:
    return Frame(
        camera=camera,
        image=img,
        captured_at=1_790_000_000.25 + index,
        captured_mono=time.monotonic(),
        index=index,
    )


def make_yolo(
    frame: Frame, seq: int, device: str = "dev-1", boot_id: str = "b00fb00fb00fb00f"
) -> DetectionMessage:
    return DetectionMessage(
        device=device,
        camera=frame.camera,
        boot_id=boot_id,
        seq=seq,
        ts=rfc3339_ms(frame.captured_at),
        frame=FrameSize(width=frame.width, height=frame.height),
        model=ModelRef(name="demo", version=3, sha256="ab" * 32),
        source="yolo",
        latency_ms=Latency(pre=1.0, infer=10.0, post=1.0, total=12.0),
        detections=[],
        hard=True,
    )


def dets(*confs: float) -> Detections:
    """Detections with the given confidences (boxes irrelevant)."""
    n = len(confs)
    return Detections(
        xyxy=np.tile(np.array([[1, 2, 30, 40]], dtype=np.float32), (n, 1)),
        confidence=np.array(confs, dtype=np.float32),
        class_id=np.zeros((n,), dtype=np.int64),
    )


__all__ = ["CLASS_NAMES", "dets", "make_frame", "make_yolo"]
