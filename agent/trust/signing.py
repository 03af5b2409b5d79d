"""ed25519 keys and signatures over wire objects (`agent.contracts.signed.SignedModel`).

Keys are raw 32-byte ed25519 keys, written as base64 in config files. A key id is the first
16 hex digits of sha256 of the raw public key (`key_id`). A signature covers the canonical form
of the object as received (or as built, on the signing side) without its `signature` field.
No disk, no network.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.contracts.signed import SignedModel
from agent.util.errors import ReasonError

M = TypeVar("M", bound=SignedModel)

PublicKeyLike = Ed25519PublicKey | str | bytes
"""A public key object, its raw 32 bytes, or those bytes in base64."""


def public_raw(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """Raw 32-byte public key of a public or private key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> str:
    """Key id: first 16 hex digits of sha256 of the raw 32-byte public key."""
    raw = key if isinstance(key, bytes) else public_raw(key)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_b64(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Base64 of the raw public key, as written in the device config."""
    return base64.b64encode(public_raw(key)).decode("ascii")


def private_key_b64(key: Ed25519PrivateKey) -> str:
    """Base64 of the raw 32-byte private key (keep it off the device)."""
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


def load_private_key(b64: str) -> Ed25519PrivateKey:
    """Private key from base64 of its raw 32 bytes. Raises ValueError."""
    raw = _b64decode(b64, "private key")
    if len(raw) != 32:
        raise ValueError(f"an ed25519 private key is 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(key: PublicKeyLike) -> Ed25519PublicKey:
    """Public key from an object, raw bytes or base64 of the raw 32 bytes. Raises ValueError."""
    if isinstance(key, Ed25519PublicKey):
        return key
    raw = key if isinstance(key, bytes) else _b64decode(key, "public key")
    if len(raw) != 32:
        raise ValueError(f"an ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def trusted_key_map(keys: Mapping[str, PublicKeyLike]) -> dict[str, Ed25519PublicKey]:
    """Check a `{key id: key}` mapping (each id must be the key's own id) and load the keys."""
    out: dict[str, Ed25519PublicKey] = {}
    for kid, value in keys.items():
        pub = load_public_key(value)
        if key_id(pub) != kid:
            raise ValueError(f"key id {kid!r} does not match its key (its id is {key_id(pub)})")
        out[kid] = pub
    return out


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


class SignatureProblem(str, Enum):
    """Why a signed object was refused."""

    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"


class SignatureError(ReasonError[SignatureProblem]):
    """A signed object failed verification; `reason` says how."""


def sign(obj: M, private_key: Ed25519PrivateKey) -> M:
    """Return `obj` with `key_id` and `signature` of `private_key` filled in."""
    unsigned = obj.model_copy(update={"key_id": key_id(private_key), "signature": None})
    signature = base64.b64encode(private_key.sign(unsigned.signed_part())).decode("ascii")
    return unsigned.model_copy(update={"signature": signature})


def verify(obj: SignedModel, trusted_keys: Mapping[str, PublicKeyLike]) -> str:
    """Check `obj`'s signature against `trusted_keys` ({key id: key}); return the key id.

    Raises SignatureError (unsigned, unknown_key, bad_signature).
    """
    kid, signature = getattr(obj, "key_id", None), getattr(obj, "signature", None)
    if signature is None or kid is None:
        raise SignatureError(SignatureProblem.UNSIGNED, "no signature or key id")
    pub = trusted_keys.get(kid)
    if pub is None:
        raise SignatureError(SignatureProblem.UNKNOWN_KEY, f"signed by untrusted key {kid}")
    try:
        load_public_key(pub).verify(base64.b64decode(signature), obj.signed_part())
    except InvalidSignature:
        raise SignatureError(
            SignatureProblem.BAD_SIGNATURE, f"signature does not verify with key {kid}"
        ) from None
    return kid
