"""Attack: a signed ONNX model whose initializer reads ../../etc/passwd is refused on the
device before anything loads it (real loop, real signatures, loopback HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaState, Reason
from agent.ota.store import ModelStore
from tests.helpers.external_data import external_data_model
from tests.ota import models as variants
from tests.ota.artifact_server import ArtifactServer
from tests.ota.conftest import Forge
from tests.ota.rig import Rig, clip_frames


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
    with Rig(tmp_path / "state", demo_model, demo_manifest, conf, images, trust=forge.trust()) as r:
        r.send(forge.command(m, url=url))
        end = r.wait_terminal("cmd-1")
        running = r.pipeline.active_detector().info
    assert end.state is OtaState.FAILED and end.reason is Reason.INCOMPATIBLE, end.detail
    assert "escapes the model directory" in (end.detail or "")
    assert OtaState.LOADING not in {s.state for s in r.publisher.states("cmd-1")}
    assert running.version == 1
    assert not (ModelStore(tmp_path / "state" / "models").root / m.name / "2").exists()
