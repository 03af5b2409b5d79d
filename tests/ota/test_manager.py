"""The OTA manager on a real inference loop: real models, real signatures, loopback HTTP."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaAction, OtaState, Reason, parse_rfc3339
from agent.ota.store import ModelStore
from tests.ota import models as variants
from tests.ota.artifact_server import ArtifactServer
from tests.ota.conftest import Forge
from tests.ota.rig import Rig, clip_frames

TERMINAL = {OtaState.COMMITTED, OtaState.FAILED, OtaState.ROLLED_BACK, OtaState.REJECTED}


@pytest.fixture(scope="module")
def images(demo_clip: Path) -> list[np.ndarray]:
    return clip_frames(demo_clip, 30)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, demo_model: Path) -> dict[str, Path]:
    """Real ONNX variants of the demo model (see tests/ota/models.py)."""
    d = tmp_path_factory.mktemp("zoo")
    out = {
        "v2": variants.retagged(demo_model, d / "v2.onnx"),
        "v3": variants.retagged(demo_model, d / "v3.onnx", tag="v3"),
        "boosted": variants.boosted(demo_model, d / "boosted.onnx"),
        "silent": variants.silent(demo_model, d / "silent.onnx"),
        "nan": variants.nan(demo_model, d / "nan.onnx"),
        "overconfident": variants.overconfident(demo_model, d / "overconfident.onnx"),
        "crashing": variants.crashing(demo_model, d / "crashing.onnx"),
        "resized": variants.resized_3class(demo_model, d / "resized.onnx"),
    }
    junk = d / "junk.onnx"
    junk.write_bytes(os.urandom(4096))
    out["junk"] = junk
    return out


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    with ArtifactServer() as s:
        yield s


def cfg(forge: Forge, **kw: object):  # noqa: ANN201
    base: dict[str, object] = dict(
        probation_s=1.0,
        probation_min_frames=3,
        read_timeout_s=3.0,
        download_deadline_s=30.0,
        retry_backoff_s=0.0,
        disk_margin_bytes=0,
        progress_interval_s=0.05,
        validation_frames=3,
        latency_budget_ms=5000.0,
    )
    base.update(kw)
    return forge.config(**base)


def serve(
    server: ArtifactServer,
    path: Path,
    base: Manifest,
    version: int,
    fault: str = "ok",
    **changes: object,
) -> tuple[str, Manifest]:
    m = variants.manifest_for(path, base, version, **changes)
    return server.add(f"{m.sha256}", path.read_bytes(), fault), m


def rig(tmp_path: Path, model: Path, manifest: Manifest, conf, images, trust) -> Rig:  # noqa: ANN001
    return Rig(tmp_path / "state", model, manifest, conf, images, trust=trust)


def test_deploy_commits_and_swaps_between_frames(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """A valid deploy walks every state to committed; frames switch model with no seq gap."""
    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        r.wait_frames(3)
        r.send(forge.command(m2, url=url))
        end = r.wait_terminal("cmd-1")
        r.wait_frames(2)
    assert end.state is OtaState.COMMITTED
    states = [s.state for s in r.publisher.states("cmd-1")]
    order = [
        OtaState.DOWNLOADING,
        OtaState.VERIFYING,
        OtaState.LOADING,
        OtaState.VALIDATING,
        OtaState.ACTIVE,
        OtaState.COMMITTED,
    ]
    assert [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]] == order
    assert any(s.progress and s.progress.bytes == m2.length for s in r.publisher.states("cmd-1"))
    seqs = [seq for _, seq, _ in r.messages]
    assert seqs == list(range(len(seqs)))
    v = r.versions()
    assert v[0] == 1 and v[-1] == 2 and v == sorted(v)
    assert r.messages[-1][2]["model"]["sha256"] == m2.sha256
    pointer = ModelStore(tmp_path / "state" / "models").read_pointer()
    assert pointer.active is not None and pointer.active.sha256 == m2.sha256
    assert pointer.previous is not None and pointer.previous.version == 1
    assert end.active_model is not None and end.active_model.version == 2
    active = [m for m in r.publisher.states("cmd-1") if m.state is OtaState.ACTIVE]
    assert active and all(m.probation_ends is not None for m in active)
    ends = parse_rfc3339(active[0].probation_ends or "") - parse_rfc3339(active[0].ts)
    assert ends.total_seconds() == pytest.approx(r.cfg.probation_s, abs=0.01)
    assert end.probation_ends is None  # announced only while on probation


def test_swap_with_model_change_listener(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """A model-change listener that reads the active model (as the daemon's status does) sees
    the new model, and the loop keeps running."""
    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    with Rig(
        tmp_path / "state",
        demo_model,
        demo_manifest,
        cfg(forge),
        images,
        listen=True,
        trust=forge.trust(),
    ) as r:
        r.wait_frames(2)
        r.send(forge.command(m2, url=url))
        end = r.wait_terminal("cmd-1", 30)
        r.wait_frames(2, timeout=10)
    assert end.state is OtaState.COMMITTED, end.detail
    assert r.changes == [m2.sha256]


def test_swap_across_input_size_and_class_count(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """A model with another input size (256) and three classes swaps in and is committed."""
    url, m = serve(
        server,
        zoo["resized"],
        demo_manifest,
        2,
        input_size=(256, 256),
        class_names=["person", "car", "bicycle"],
    )
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        r.wait_frames(2)
        r.send(forge.command(m, url=url))
        end = r.wait_terminal("cmd-1")
        assert r.pipeline.active_detector().info.class_names == ("person", "car", "bicycle")
    assert end.state is OtaState.COMMITTED, end.detail


BAD_MODELS = [
    # random bytes with a valid manifest: ONNX Runtime cannot load it
    ("junk", Reason.LOAD_FAILED),
    # loads, outputs NaN
    ("nan", Reason.VALIDATION_FAILED),
    # loads, scores above 1
    ("overconfident", Reason.VALIDATION_FAILED),
    # loads (survives a dark warm-up), raises on real frames
    ("crashing", Reason.VALIDATION_FAILED),
]


@pytest.mark.parametrize(("variant", "reason"), BAD_MODELS, ids=[b[0] for b in BAD_MODELS])
def test_bad_model_fails_and_old_keeps_running(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
    variant: str,
    reason: Reason,
) -> None:
    """A model that does not load or misbehaves on recent frames fails; the old one runs on."""
    url, m = serve(server, zoo[variant], demo_manifest, 2)
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        r.wait_frames(3)
        r.send(forge.command(m, url=url))
        end = r.wait_terminal("cmd-1")
        r.wait_frames(2)
        running = r.pipeline.active_detector().info
    assert end.state is OtaState.FAILED and end.reason is reason, end.detail
    assert running.version == 1 and set(r.versions()) == {1}
    store = ModelStore(tmp_path / "state" / "models")
    assert not (store.root / m.name / "2").exists()
    assert list(store.staging_dir.iterdir()) == []


def test_flipped_artifact_fails_hash_untouched(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """A download with one flipped byte ends failed(hash_mismatch); nothing is installed."""
    m = variants.manifest_for(zoo["v2"], demo_manifest, 2)
    url = server.add("flip", zoo["v2"].read_bytes(), "flip", flip_at=m.length // 2)
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        r.send(forge.command(m, url=url))
        end = r.wait_terminal("cmd-1")
    assert end.state is OtaState.FAILED and end.reason is Reason.HASH_MISMATCH
    assert not (tmp_path / "state" / "models" / m.name / "2").exists()


def test_probation_failure_rolls_back(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """A model whose detection rate collapses after the swap is rolled back automatically."""
    base = variants.manifest_for(zoo["boosted"], demo_manifest, 1)
    url, m = serve(server, zoo["silent"], demo_manifest, 2)
    with rig(
        tmp_path, zoo["boosted"], base, cfg(forge, baseline_window_s=60.0), images, forge.trust()
    ) as r:
        r.wait_frames(5)
        r.send(forge.command(m, url=url))
        end = r.wait_terminal("cmd-1")
        r.wait_frames(2)
        running = r.pipeline.active_detector().info
    assert end.state is OtaState.ROLLED_BACK and end.reason is Reason.PROBATION_FAILED, end.detail
    assert running.sha256 == base.sha256
    assert 2 in r.versions() and r.versions()[-1] == 1
    pointer = ModelStore(tmp_path / "state" / "models").read_pointer()
    assert pointer.running() is not None and pointer.running().sha256 == base.sha256


def test_second_command_while_busy_is_rejected(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """While one command downloads, another is rejected busy; the first completes."""
    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    data = zoo["v2"].read_bytes()
    slow = server.add("slow", data, "reset", reset_at=len(data) // 3)
    with rig(
        tmp_path, demo_model, demo_manifest, cfg(forge, retry_backoff_s=0.5), images, forge.trust()
    ) as r:
        r.send(forge.command(m2, url=slow))
        time.sleep(0.05)
        r.send(forge.command(m2, url=url))
        second = r.wait_terminal("cmd-2", 10)
        first = r.wait_terminal("cmd-1")
    assert second.state is OtaState.REJECTED and second.reason is Reason.BUSY
    assert first.state is OtaState.COMMITTED


def test_redelivered_command_is_not_redone(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """The same command delivered twice downloads once and re-announces its state."""
    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    cmd = forge.command(m2, url=url)
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        r.send(cmd)
        r.wait_terminal("cmd-1")
        before = len(r.publisher.states("cmd-1"))
        r.send(cmd)
        deadline = time.monotonic() + 5
        while len(r.publisher.states("cmd-1")) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        again = r.publisher.states("cmd-1")[-1]
    assert again.state is OtaState.COMMITTED
    assert len(server.artifacts[f"/{m2.sha256}"].requests) == 1
    assert {s.reason for s in r.publisher.states("cmd-1")} == {None}


def test_sequence_survives_restart(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """After a restart, a command with an older sequence is still refused (old_sequence)."""
    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    url3, m3 = serve(server, zoo["v3"], demo_manifest, 3)
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        r.send(forge.command(m2, url=url, sequence=5))
        assert r.wait_terminal("cmd-5").state is OtaState.COMMITTED
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        assert r.pipeline.active_detector().info.version == 2
        r.send(forge.command(m3, url=url3, sequence=4))
        end = r.wait_terminal("cmd-4", 10)
    assert end.state is OtaState.REJECTED and end.reason is Reason.OLD_SEQUENCE


def test_pause_mode_swap_reports_pause(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """In pause mode the old model is unloaded first and the pause is measured."""
    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    with rig(
        tmp_path, demo_model, demo_manifest, cfg(forge, swap_mode="pause"), images, forge.trust()
    ) as r:
        r.wait_frames(3)
        r.send(forge.command(m2, url=url))
        end = r.wait_terminal("cmd-1")
    assert end.state is OtaState.COMMITTED, end.detail
    assert end.swap is not None and end.swap.mode == "pause" and end.swap.pause_ms > 0
    seqs = [seq for _, seq, _ in r.messages]
    assert seqs == list(range(len(seqs)))


def test_signed_rollback_returns_to_previous(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """After a deploy, a signed rollback to the kept previous version runs it again."""
    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    with rig(tmp_path, demo_model, demo_manifest, cfg(forge), images, forge.trust()) as r:
        r.send(forge.command(m2, url=url))
        assert r.wait_terminal("cmd-1").state is OtaState.COMMITTED
        r.send(forge.command(demo_manifest, action=OtaAction.ROLLBACK, url=None))
        end = r.wait_terminal("cmd-2")
        running = r.pipeline.active_detector().info
    assert end.state is OtaState.COMMITTED, end.detail
    assert all(m.probation_ends is None for m in r.publisher.states("cmd-2"))  # no probation
    assert (
        running.sha256
        == demo_manifest.sha256
        == hashlib.sha256(demo_model.read_bytes()).hexdigest()
    )


def test_build_step_runs_between_verify_and_load(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """With a build hook (the engines' prepare_model; a no-op on ONNX Runtime) `building` is
    reported after verifying and the installed artifact is what gets built."""
    from agent.engines.build import prepare_model
    from agent.engines.ort import OnnxRuntimeConfig

    built: list[Path] = []

    def build(path: Path, _m: Manifest) -> Path:
        built.append(path)
        return prepare_model(OnnxRuntimeConfig(), path)

    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    with Rig(
        tmp_path / "state",
        demo_model,
        demo_manifest,
        cfg(forge),
        images,
        build=build,
        trust=forge.trust(),
    ) as r:
        r.send(forge.command(m2, url=url))
        end = r.wait_terminal("cmd-1")
    states = [s.state for s in r.publisher.states("cmd-1")]
    assert end.state is OtaState.COMMITTED
    assert states.index(OtaState.VERIFYING) < states.index(OtaState.BUILDING)
    assert states.index(OtaState.BUILDING) < states.index(OtaState.LOADING)
    assert built and built[0].parts[-3:] == (m2.name, "2", "model.onnx")


def test_failed_build_is_reported(
    tmp_path: Path,
    forge: Forge,
    server: ArtifactServer,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    images: list[np.ndarray],
) -> None:
    """A build that raises ends failed(build_failed) and the installed artifact is removed."""
    from agent.engines.base import EngineError

    def build(path: Path, _m: Manifest) -> Path:
        raise EngineError("TensorRT builder ran out of workspace")

    url, m2 = serve(server, zoo["v2"], demo_manifest, 2)
    with Rig(
        tmp_path / "state",
        demo_model,
        demo_manifest,
        cfg(forge),
        images,
        build=build,
        trust=forge.trust(),
    ) as r:
        r.send(forge.command(m2, url=url))
        end = r.wait_terminal("cmd-1")
    assert end.state is OtaState.FAILED and end.reason is Reason.BUILD_FAILED
    assert not (tmp_path / "state" / "models" / m2.name / "2").exists()
