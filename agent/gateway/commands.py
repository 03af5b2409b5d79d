"""Signed OTA commands: which model a rollout action targets, and the signed command for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.ota import OtaAction, OtaCommand, SignedManifest, format_rfc3339
from agent.gateway.db import ModelRow
from agent.gateway.deploy_checks import DeployRefusal, DeployRefused
from agent.gateway.rollout import CommandKind, Rollout, Send
from agent.trust.ota import sign_command


def command_target(r: Rollout, a: Send) -> tuple[str, int]:
    """(name, version) the action installs: the rollout's model, or the device's previous."""
    if a.kind is CommandKind.DEPLOY:
        return r.model_name, r.model_version
    prev = r.slots[a.device].previous
    if prev is None:
        raise DeployRefused(
            DeployRefusal.NO_ROLLBACK_TARGET, "previous model unknown; cannot roll back"
        )
    return prev


@dataclass(frozen=True)
class CommandSigner:
    """Builds and signs commands with the gateway key; artifacts under `public_url`."""

    key: Ed25519PrivateKey
    public_url: str
    ttl_s: float

    def sign(self, a: Send, model: ModelRow, sequence: int, now: float) -> dict[str, Any]:
        """The signed command of action `a` for `model`, as JSON-ready data."""
        command = OtaCommand(
            command_id=a.command_id,
            device=a.device,
            action=OtaAction.DEPLOY if a.kind is CommandKind.DEPLOY else OtaAction.ROLLBACK,
            manifest=SignedManifest.from_wire(model.signed),
            artifact_url=f"{self.public_url}/v1/artifacts/{model.sha256}",
            sequence=sequence,
            issued=format_rfc3339(now),
            expires=format_rfc3339(now + self.ttl_s),
        )
        return sign_command(command, self.key).model_dump(mode="json", by_alias=True)
