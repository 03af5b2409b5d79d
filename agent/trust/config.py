"""The agent config's `trust:` section: every public key the device trusts, in one place.

Release keys sign model manifests (kept on a workstation, off the device and off the gateway);
gateway keys sign OTA commands, delivery acks and camera-config pushes. A key of one set is
unknown to the other. `allowed_models` optionally pins the model names the device accepts.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from agent.contracts.ids import SafeId
from agent.trust.signing import trusted_key_map
from agent.util.models import FrozenModel


class TrustConfig(FrozenModel):
    """Public keys (base64 of the raw 32-byte ed25519 key, by key id) and model pins."""

    release_keys: dict[str, str] = Field(default_factory=dict)
    """Trusted release public keys that sign manifests: {key id: base64 of the raw 32-byte ed25519
    key}. The key id is the first 16 hex digits of sha256 of the raw key."""
    gateway_keys: dict[str, str] = Field(default_factory=dict)
    """Trusted gateway public keys that sign OTA commands, delivery acks (edge.ack/2) and config
    pushes: {key id: base64 raw key}."""
    allowed_models: list[SafeId] = Field(default_factory=list)
    """Pin: the only model names this device accepts (a command for any other name is rejected
    `model_not_allowed`). Empty: any name, but a change of name needs a manifest generation above
    the running one (see docs/ota.md)."""

    @field_validator("release_keys", "gateway_keys")
    @classmethod
    def _keys_valid(cls, v: dict[str, str]) -> dict[str, str]:
        trusted_key_map(v)  # raises ValueError on bad base64, wrong length or a wrong key id
        return v
