"""The gateway's two ed25519 keys: the release key (signs manifests) and the gateway key
(signs commands).

Private keys are files holding base64 of the raw 32-byte key, created with mode 0600 inside a
directory of mode 0700, never overwritten and never printed. Public keys are exported in the
form the device config wants: `{key id: base64 raw public key}` under `ota.release_keys` and
`ota.gateway_keys` (see `agent.ota.config.OtaConfig`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.ota.signing import key_id, load_private_key, private_key_b64, public_key_b64


class KeyRole(str, Enum):
    """What a key signs."""

    RELEASE = "release"  # manifests; keep it off the devices (ideally off the gateway too)
    GATEWAY = "gateway"  # commands


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed or has unsafe permissions."""


@dataclass(frozen=True)
class PublicKeyInfo:
    """A public key as the device config wants it."""

    role: KeyRole
    key_id: str  # first 16 hex digits of sha256 of the raw public key
    public_key: str  # base64 of the raw 32-byte key


def key_path(keys_dir: Path, role: KeyRole) -> Path:
    return keys_dir / f"{role.value}.key"


def _ensure_private_dir(keys_dir: Path) -> None:
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)


def init_keys(keys_dir: Path) -> dict[KeyRole, tuple[PublicKeyInfo, bool]]:
    """Create the keys that do not exist yet; returns each key's public info and whether it was
    created now. Existing keys are never replaced."""
    _ensure_private_dir(keys_dir)
    out: dict[KeyRole, tuple[PublicKeyInfo, bool]] = {}
    for role in KeyRole:
        path = key_path(keys_dir, role)
        created = False
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(private_key_b64(key) + "\n")
                f.flush()
                os.fsync(f.fileno())
            created = True
        out[role] = (public_info(keys_dir, role), created)
    return out


def load_key(keys_dir: Path, role: KeyRole) -> Ed25519PrivateKey:
    """Read a private key, refusing files readable by group or others."""
    path = key_path(keys_dir, role)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no {role.value} key; run `edge-gateway keys init`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: mode {stat.S_IMODE(mode):04o} lets others read the {role.value} key; "
            f"chmod 600 it"
        )
    try:
        return load_private_key(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise KeyFileError(f"{path}: not a base64 ed25519 private key ({err})") from None


def public_info(keys_dir: Path, role: KeyRole) -> PublicKeyInfo:
    key = load_key(keys_dir, role)
    return PublicKeyInfo(role=role, key_id=key_id(key), public_key=public_key_b64(key))


def export_yaml(keys_dir: Path) -> str:
    """The `ota:` lines a device config needs to trust this gateway (public keys only)."""
    rel = public_info(keys_dir, KeyRole.RELEASE)
    gw = public_info(keys_dir, KeyRole.GATEWAY)
    return (
        "ota:\n"
        "  enabled: true\n"
        "  release_keys:\n"
        f"    {rel.key_id}: {rel.public_key}\n"
        "  gateway_keys:\n"
        f"    {gw.key_id}: {gw.public_key}\n"
    )
