"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.helpers.broker import Mosquitto

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "engines" / "demo"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port, killed after the test."""
    with Mosquitto(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The bundled demo YOLO ONNX model."""
    path = DEMO_DIR / "model.onnx"
    assert path.exists(), f"demo model missing at {path}"
    return path


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    """The bundled demo clip (pedestrians and cars)."""
    path = DEMO_DIR / "clip.mp4"
    assert path.exists(), f"demo clip missing at {path}"
    return path


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Each test starts from structlog's defaults: a CLI run in-process (CliRunner) configures
    logging for the whole interpreter (e.g. a warning-level filter), which must not leak into
    the next test's `structlog.testing.capture_logs`."""
    yield
    structlog.reset_defaults()
