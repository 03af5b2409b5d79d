"""ed25519 signing and verification of OTA manifests and commands.

Signatures are made and checked by `agent.trust.signing` over the canonical form of the
received JSON; this module maps their failures to OTA reason codes. The device trusts two
separate sets of public keys from its config (`trust:`): release keys (sign manifests) and
gateway keys (sign commands); a key from one set is unknown to the other.

Used by the device (verify) and by the gateway and tests (sign). No disk, no network.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.manifest import Manifest
from agent.contracts.ota import (
    OtaCommand,
    OtaRejectedError,
    Reason,
    SignedCommand,
    SignedManifest,
    parse_rfc3339,
)
from agent.trust.signing import (
    PublicKeyLike,
    SignatureError,
    SignatureProblem,
    sign,
    verify,
)

C = TypeVar("C", bound=SignedCommand)

_MANIFEST_REASONS = {
    SignatureProblem.UNSIGNED: Reason.MANIFEST_UNSIGNED,
    SignatureProblem.UNKNOWN_KEY: Reason.MANIFEST_UNKNOWN_KEY,
    SignatureProblem.BAD_SIGNATURE: Reason.BAD_MANIFEST_SIGNATURE,
}
_COMMAND_REASONS = {
    SignatureProblem.UNSIGNED: Reason.UNSIGNED,
    SignatureProblem.UNKNOWN_KEY: Reason.UNKNOWN_KEY,
    SignatureProblem.BAD_SIGNATURE: Reason.BAD_SIGNATURE,
}


# ---------------------------------------------------------------------------------------------
# manifests


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> SignedManifest:
    """Wrap `manifest` in an envelope signed by a release key."""
    return sign(SignedManifest(manifest=manifest), private_key)


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
    try:
        verify(envelope, trusted_keys)
    except SignatureError as err:
        raise OtaRejectedError(_MANIFEST_REASONS[err.reason], f"manifest: {err.detail}") from None
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
    return sign(command, private_key)


def verify_command_signature(command: C, trusted_keys: Mapping[str, PublicKeyLike]) -> C:
    """Check only the gateway signature. Raises OtaRejectedError (unsigned, unknown_key,
    bad_signature)."""
    try:
        verify(command, trusted_keys)
    except SignatureError as err:
        raise OtaRejectedError(_COMMAND_REASONS[err.reason], f"command: {err.detail}") from None
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


def check_command_expiry(command: SignedCommand, now: datetime | None = None) -> None:
    """Raise OtaRejectedError(expired_command) if the command is past its `expires`."""
    current = now or datetime.now(timezone.utc)
    if current >= parse_rfc3339(command.expires):
        raise OtaRejectedError(
            Reason.EXPIRED_COMMAND, f"command {command.command_id} expired at {command.expires}"
        )
