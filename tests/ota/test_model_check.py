"""ONNX models with external data are refused before any load (real ONNX files, real loop)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.manifest import Manifest
from agent.ota.model_check import (
    ExternalDataError,
    NotOnnxError,
    check_onnx_file,
    location_escapes,
)
from agent.ota.protocol import OtaState, Reason
from agent.ota.store import ModelStore
from tests.helpers.external_data import external_data_in_subgraph, external_data_model
from tests.ota import models as variants
from tests.ota.artifact_server import ArtifactServer
from tests.ota.conftest import Forge
from tests.ota.rig import Rig, clip_frames


@pytest.mark.parametrize(
    ("location", "escapes"),
    [
        ("weights.bin", False),  # beside the model
        ("data/weights.bin", False),  # below the model's directory
        ("../../etc/passwd", True),  # climbs out
        ("data/../../x", True),  # climbs out through a subdirectory
        ("/etc/passwd", True),  # absolute POSIX path
        ("C:\\Windows\\win.ini", True),  # Windows drive
        ("..\\..\\secret", True),  # Windows separators
        ("\\\\server\\share\\x", True),  # UNC path
    ],
)
def test_location_escapes(location: str, escapes: bool) -> None:
    """A `location` leaves the model directory when absolute, on a drive or climbing with '..'."""
    assert location_escapes(location) is escapes


def test_escaping_initializer_is_refused(tmp_path: Path) -> None:
    """An initializer reading ../../etc/passwd is refused, and the problem names it."""
    with pytest.raises(ExternalDataError, match=r"initializer\[weights\].*escapes"):
        check_onnx_file(external_data_model(tmp_path / "m.onnx"))


def test_external_data_inside_the_directory_is_refused_too(tmp_path: Path) -> None:
    """An artifact is one file: external data beside the model is refused as well."""
    (tmp_path / "weights.bin").write_bytes(b"\0" * 240)
    with pytest.raises(ExternalDataError, match="self-contained"):
        check_onnx_file(external_data_model(tmp_path / "m.onnx", location="weights.bin"))


def test_external_data_hidden_in_a_subgraph_is_found(tmp_path: Path) -> None:
    """A tensor in an If branch with an absolute location is refused."""
    with pytest.raises(ExternalDataError, match="then_branch.*'/etc/shadow'"):
        check_onnx_file(external_data_in_subgraph(tmp_path / "m.onnx"))


def test_demo_model_passes(demo_model: Path) -> None:
    """The bundled demo model keeps all its weights inside the file."""
    check_onnx_file(demo_model)


def test_not_onnx_is_refused(tmp_path: Path) -> None:
    """Random bytes are not an ONNX model."""
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\xff\xff\xff" * 64)
    with pytest.raises(NotOnnxError):
        check_onnx_file(path)


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    with ArtifactServer() as s:
        yield s


def test_device_refuses_escaping_model_before_loading(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    demo_model: Path,
    demo_manifest: Manifest,
    demo_clip: Path,
) -> None:
    """A signed deploy of a model reading ../../etc/passwd fails `incompatible` before loading;
    the old model keeps running and nothing is installed."""
    evil = external_data_model(tmp_path / "evil.onnx")
    m = variants.manifest_for(evil, demo_manifest, 2)
    url = server.add(m.sha256, evil.read_bytes(), "ok")
    images: list[np.ndarray] = clip_frames(demo_clip, 10)
    conf = forge.config(read_timeout_s=3.0, download_deadline_s=30.0, disk_margin_bytes=0)
    with Rig(tmp_path / "state", demo_model, demo_manifest, conf, images) as r:
        r.send(forge.command(m, url=url))
        end = r.wait_terminal("cmd-1")
        running = r.pipeline.active_detector().info
    assert end.state is OtaState.FAILED and end.reason is Reason.INCOMPATIBLE, end.detail
    assert "escapes the model directory" in (end.detail or "")
    assert OtaState.LOADING not in {s.state for s in r.publisher.states("cmd-1")}
    assert running.version == 1
    assert not (ModelStore(tmp_path / "state" / "models").root / m.name / "2").exists()
