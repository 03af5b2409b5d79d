"""ed25519 signing and verification of OTA manifests and commands.

Keys are raw 32-byte ed25519 keys, written as base64 in config files. A key id is the first
16 hex digits of sha256 of the raw public key (`key_id`). The device trusts two separate sets
of public keys from its config: release keys (sign manifests) and gateway keys (sign
commands); a key from one set is unknown to the other.

Used by the device (verify) and by the gateway and tests (sign). No disk, no network.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.manifest import Manifest
from agent.ota.protocol import (
    OtaCommand,
    OtaRejectedError,
    Reason,
    SignedManifest,
    canonical_bytes,
    parse_rfc3339,
)
from agent.trust.signing import (  # noqa: F401  (re-exported for OTA callers)
    PublicKeyLike,
    key_id,
    load_private_key,
    load_public_key,
    private_key_b64,
    public_key_b64,
    public_raw,
    trusted_key_map,
)


def _sign(data: bytes, key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(data)).decode("ascii")


# ---------------------------------------------------------------------------------------------
# manifests


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> SignedManifest:
    """Wrap `manifest` in an envelope signed by a release key."""
    unsigned = SignedManifest(manifest=manifest, key_id=key_id(private_key))
    return unsigned.model_copy(update={"signature": _sign(canonical_bytes(unsigned), private_key)})


def verify_manifest(
    envelope: SignedManifest,
    trusted_keys: Mapping[str, PublicKeyLike],
    now: datetime | None = None,
) -> Manifest:
    """Return the manifest if a trusted release key signed it and it has not expired.

    Raises OtaRejectedError with `manifest_unsigned`, `manifest_unknown_key`,
    `bad_manifest_signature` or `expired_manifest`. `now` defaults to the current UTC time;
    pass None-checking callers a fixed time in tests.
    """
    if envelope.signature is None or envelope.key_id is None:
        raise OtaRejectedError(Reason.MANIFEST_UNSIGNED, "manifest has no signature or key id")
    pub = trusted_keys.get(envelope.key_id)
    if pub is None:
        raise OtaRejectedError(
            Reason.MANIFEST_UNKNOWN_KEY, f"manifest signed by untrusted key {envelope.key_id}"
        )
    try:
        load_public_key(pub).verify(base64.b64decode(envelope.signature), canonical_bytes(envelope))
    except InvalidSignature:
        raise OtaRejectedError(
            Reason.BAD_MANIFEST_SIGNATURE,
            f"manifest signature does not verify with key {envelope.key_id}",
        ) from None
    m = envelope.manifest
    if m.expires is not None:
        try:
            expires = parse_rfc3339(m.expires)
        except ValueError as err:
            raise OtaRejectedError(Reason.MALFORMED, f"manifest.expires: {err}") from None
        current = now or datetime.now(timezone.utc)
        if current >= expires:
            raise OtaRejectedError(
                Reason.EXPIRED_MANIFEST, f"manifest {m.name} v{m.version} expired at {m.expires}"
            )
    return m


# ---------------------------------------------------------------------------------------------
# commands


def sign_command(command: OtaCommand, private_key: Ed25519PrivateKey) -> OtaCommand:
    """Return `command` with `key_id` and `signature` of the gateway key filled in."""
    unsigned = command.model_copy(update={"key_id": key_id(private_key), "signature": None})
    return unsigned.model_copy(update={"signature": _sign(canonical_bytes(unsigned), private_key)})


def verify_command_signature(
    command: OtaCommand, trusted_keys: Mapping[str, PublicKeyLike]
) -> OtaCommand:
    """Check only the gateway signature. Raises OtaRejectedError (unsigned, unknown_key,
    bad_signature)."""
    if command.signature is None or command.key_id is None:
        raise OtaRejectedError(Reason.UNSIGNED, "command has no signature or key id")
    pub = trusted_keys.get(command.key_id)
    if pub is None:
        raise OtaRejectedError(
            Reason.UNKNOWN_KEY, f"command signed by untrusted key {command.key_id}"
        )
    try:
        load_public_key(pub).verify(base64.b64decode(command.signature), canonical_bytes(command))
    except InvalidSignature:
        raise OtaRejectedError(
            Reason.BAD_SIGNATURE, f"command signature does not verify with key {command.key_id}"
        ) from None
    return command


def verify_command(
    command: OtaCommand,
    gateway_keys: Mapping[str, PublicKeyLike],
    release_keys: Mapping[str, PublicKeyLike],
    device: str | None = None,
    now: datetime | None = None,
) -> Manifest:
    """Stateless checks of a command in the protocol's order; returns its verified manifest.

    Order: command signature, device id (when `device` is given), command expiry, manifest
    signature, manifest expiry. Sequence, replay and version checks need the device's
    persisted state and live in `agent.ota.validate`.
    """
    verify_command_signature(command, gateway_keys)
    if device is not None and command.device != device:
        raise OtaRejectedError(
            Reason.WRONG_DEVICE, f"command is for device {command.device!r}, this is {device!r}"
        )
    check_command_expiry(command, now)
    return verify_manifest(command.manifest, release_keys, now)


def check_command_expiry(command: OtaCommand, now: datetime | None = None) -> None:
    """Raise OtaRejectedError(expired_command) if the command is past its `expires`."""
    current = now or datetime.now(timezone.utc)
    if current >= parse_rfc3339(command.expires):
        raise OtaRejectedError(
            Reason.EXPIRED_COMMAND, f"command {command.command_id} expired at {command.expires}"
        )
