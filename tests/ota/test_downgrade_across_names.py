"""The review's PoC: an old manifest under another model name is a downgrade (real ed25519)."""

from __future__ import annotations

import pytest

from agent.contracts.ota import OtaRejectedError, Reason
from agent.ota.validate import Ledger, ModelView, validate_command
from tests.ota.conftest import DEVICE, Forge, manifest


def test_old_manifest_under_another_name_is_lower_version(forge: Forge) -> None:
    """With yolo v5 committed and running, a signed command for yolo-2023 v1 is refused."""
    running = ("yolo", 5, "55" * 32)
    ledger = Ledger(last_sequence=10, max_version={"yolo": 5})
    cmd = forge.command(manifest(name="yolo-2023", version=1), sequence=11)
    keys = forge.keys()
    with pytest.raises(OtaRejectedError) as info:
        validate_command(
            cmd,
            device=DEVICE,
            gateway_keys=keys["gateway_keys"],
            release_keys=keys["release_keys"],
            ledger=ledger,
            models=ModelView(active=running, previous=None),
            busy=False,
            runnable_formats=frozenset({"onnx"}),
            max_artifact_bytes=10_000_000,
        )
    assert info.value.reason is Reason.LOWER_VERSION
