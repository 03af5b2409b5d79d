"""Fixtures for OTA tests: real ed25519 keys and a forge for signed commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaAction, OtaCommand, SignedManifest
from agent.ota.config import OtaConfig
from agent.trust.config import TrustConfig
from agent.trust.ota import sign_command, sign_manifest
from agent.trust.signing import key_id, public_key_b64

DEVICE = "dev-1"
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


def rfc(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest(version: int = 3, **changes: object) -> Manifest:
    """A plausible manifest (not tied to a file)."""
    fields: dict[str, object] = dict(
        name="demo-yolov8n",
        version=version,
        format="onnx",
        sha256="ab" * 32,
        length=1000,
        input_size=(320, 320),
        class_names=["person", "car"],
        created="2026-11-27T00:00:00Z",
        expires=None,
    )
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


@dataclass
class Forge:
    """Signs manifests and commands with real keys; counts sequence numbers."""

    release: Ed25519PrivateKey
    gateway: Ed25519PrivateKey
    stranger: Ed25519PrivateKey
    device: str = DEVICE
    seq: count = field(default_factory=lambda: count(1))

    def keys(self) -> dict[str, dict[str, str]]:
        return {
            "release_keys": {key_id(self.release): public_key_b64(self.release)},
            "gateway_keys": {key_id(self.gateway): public_key_b64(self.gateway)},
        }

    def config(self, **changes: object) -> OtaConfig:
        return OtaConfig(enabled=True, **changes)  # type: ignore[arg-type]

    def trust(self, **changes: object) -> TrustConfig:
        return TrustConfig(**self.keys(), **changes)  # type: ignore[arg-type]

    def envelope(self, m: Manifest, key: Ed25519PrivateKey | None = None) -> SignedManifest:
        return sign_manifest(m, key or self.release)

    def command(
        self,
        m: Manifest | SignedManifest | None = None,
        *,
        command_id: str | None = None,
        action: OtaAction = OtaAction.DEPLOY,
        url: str | None = "http://127.0.0.1:9/artifact",
        sequence: int | None = None,
        device: str | None = None,
        expires: datetime | None = None,
        key: Ed25519PrivateKey | None = None,
        now: datetime | None = None,
    ) -> OtaCommand:
        """A command signed by the gateway key (or `key`)."""
        env = m if isinstance(m, SignedManifest) else self.envelope(m or manifest())
        seq = sequence if sequence is not None else next(self.seq)
        issued = now or datetime.now(timezone.utc)
        cmd = OtaCommand(
            command_id=command_id or f"cmd-{seq}",
            device=device or self.device,
            action=action,
            manifest=env,
            artifact_url=url,
            sequence=seq,
            issued=rfc(issued),
            expires=rfc(expires or issued + timedelta(hours=1)),
        )
        return sign_command(cmd, key or self.gateway)


def to_bytes(cmd: OtaCommand) -> bytes:
    return cmd.model_dump_json(by_alias=True).encode()


def edit(payload: bytes, fn: Callable[[dict], None]) -> bytes:
    """Edit a JSON payload after signing."""
    data = json.loads(payload)
    fn(data)
    return json.dumps(data).encode()


@pytest.fixture(scope="session")
def forge_keys() -> tuple[Ed25519PrivateKey, Ed25519PrivateKey, Ed25519PrivateKey]:
    return Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


@pytest.fixture
def forge(forge_keys: tuple[Ed25519PrivateKey, ...]) -> Forge:
    """A forge with real release, gateway and untrusted keys."""
    return Forge(*forge_keys)


@pytest.fixture(scope="session")
def demo_manifest() -> Manifest:
    from agent.engines.model_loading import load_manifest

    return load_manifest(Path(__file__).resolve().parents[2] / "engines" / "demo" / "manifest.json")
