"""Bearer tokens (admin and device): made here, stored only as SHA-256, compared in constant time.

Pure functions; no file or network access.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token: what configs and the state file keep."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str | None, digests: Iterable[str | None]) -> bool:
    """True when `token` hashes to one of `digests`; every digest is compared in constant time."""
    if not token:
        return False
    mine = token_sha256(token)
    found = False
    for digest in digests:
        if digest is not None and hmac.compare_digest(mine, digest):
            found = True
    return found


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    return authorization[7:].strip() or None


def is_sha256_hex(value: str) -> bool:
    """64 lower-case hex digits."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
