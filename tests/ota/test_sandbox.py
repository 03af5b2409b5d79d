"""The memory-limited trial child: limit modes, its command line, and failing closed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaRejectedError, Reason
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.trt import TensorRTConfig
from agent.ota.sandbox import CandidateSpec, TrialRequest, child_command, limit_mode, run_trial
from tests.ota import models as variants


def spec(engine: object) -> CandidateSpec:
    return CandidateSpec(engine=engine, conf_threshold=0.25, iou_threshold=0.45, max_detections=100)


@pytest.mark.parametrize(
    ("engine", "configured", "expected"),
    [
        (OnnxRuntimeConfig(), "auto", "rlimit"),  # CPU: address-space limit
        (TensorRTConfig(), "auto", "cgroup"),  # CUDA cannot start under RLIMIT_AS
        (TensorRTConfig(), "rlimit", "rlimit"),  # an explicit choice wins
    ],
)
def test_limit_mode(engine: object, configured: str, expected: str) -> None:
    """auto picks a cgroup for TensorRT and RLIMIT_AS otherwise."""
    assert limit_mode(spec(engine), configured) == expected


def test_cgroup_mode_runs_the_child_in_a_memory_capped_scope(tmp_path: Path) -> None:
    """The cgroup command is a transient systemd scope with MemoryMax and no swap."""
    cmd = child_command("cgroup", 2048, tmp_path)
    assert cmd[:2] == ["systemd-run", "--scope"]
    assert "MemoryMax=2048M" in cmd and "MemorySwapMax=0" in cmd
    assert cmd[cmd.index("--") + 1 :][-2:] == [str(tmp_path), "0"]  # no RLIMIT_AS inside


def _request(model: Path, manifest: Manifest) -> TrialRequest:
    return TrialRequest(
        model_path=str(model),
        manifest=manifest,
        spec=spec(OnnxRuntimeConfig(threads=1)),
        latency_budget_ms=5000.0,
    )


def test_demo_model_passes_its_trial(
    tmp_path: Path, demo_model: Path, demo_manifest: Manifest
) -> None:
    """A sane model passes the child trial under the default limit."""
    run_trial(
        _request(demo_model, demo_manifest),
        [np.full((240, 320, 3), 90, np.uint8)],
        mode="rlimit",
        memory_mb=3072,
        timeout_s=120,
        workdir=tmp_path,
    )
    assert list(tmp_path.iterdir()) == []  # the trial's files are gone


def test_gigabyte_allocation_fails_validation_in_the_child(
    tmp_path: Path, demo_model: Path, demo_manifest: Manifest
) -> None:
    """A model allocating 4 GiB at warm-up is validation_failed, said to be the memory trial."""
    big = variants.hungry(demo_model, tmp_path / "big.onnx", gib=4.0)
    m = variants.manifest_for(big, demo_manifest, 2)
    work = tmp_path / "w"
    work.mkdir()
    with pytest.raises(OtaRejectedError) as err:
        run_trial(_request(big, m), [], mode="rlimit", memory_mb=2048, timeout_s=120, workdir=work)
    assert err.value.reason is Reason.VALIDATION_FAILED
    assert "memory-limited trial (rlimit, 2048 MiB)" in err.value.detail


@pytest.mark.skipif(
    Path("/run/systemd/system").exists(), reason="systemd runs here: a scope could be created"
)
def test_a_cgroup_limit_that_cannot_be_applied_fails_closed(
    tmp_path: Path, demo_model: Path, demo_manifest: Manifest
) -> None:
    """Without a systemd to create the scope, the trial fails; nothing runs unlimited."""
    with pytest.raises(OtaRejectedError) as err:
        run_trial(
            _request(demo_model, demo_manifest),
            [],
            mode="cgroup",
            memory_mb=2048,
            timeout_s=60,
            workdir=tmp_path,
        )
    assert err.value.reason is Reason.VALIDATION_FAILED
