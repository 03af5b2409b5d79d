"""The ed25519 keys: the release key (signs manifests) and the gateway key (signs commands).

The release key belongs on a workstation, not on the gateway: `keys init --release-only --out
PATH` makes it there (`init_release_key`), `models sign` uses it, and the gateway trusts only
its public half (`trust.release_keys` of the gateway config). `keys init --gateway-only` makes
just the gateway key. A single-box lab may keep both in `keys_dir` (`keys init`).

Private keys are files holding base64 of the raw 32-byte key, created with mode 0600 (inside a
directory of mode 0700 for `keys_dir`), never overwritten and never printed. Public keys are
exported in the form the device config wants: `{key id: base64 raw public key}` under
`trust.release_keys` and `trust.gateway_keys` (see `agent.trust.config.TrustConfig`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.trust.signing import key_id, load_private_key, private_key_b64, public_key_b64
from agent.util.files import fsync_dir


class KeyRole(str, Enum):
    """What a key signs."""

    RELEASE = "release"  # manifests; kept on a workstation, off the devices and the gateway
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


def _write_new_key(path: Path) -> Ed25519PrivateKey:
    """Generate a key into a new file of mode 0600 (O_EXCL: an existing file is never replaced)."""
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(private_key_b64(key) + "\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)
    return key


def init_keys(
    keys_dir: Path, roles: tuple[KeyRole, ...] = tuple(KeyRole)
) -> dict[KeyRole, tuple[PublicKeyInfo, bool]]:
    """Create the keys of `roles` that do not exist yet; returns each key's public info and
    whether it was created now. Existing keys are never replaced."""
    _ensure_private_dir(keys_dir)
    out: dict[KeyRole, tuple[PublicKeyInfo, bool]] = {}
    for role in roles:
        path = key_path(keys_dir, role)
        created = not path.exists()
        if created:
            _write_new_key(path)
        out[role] = (public_info(keys_dir, role), created)
    return out


def init_release_key(path: Path) -> PublicKeyInfo:
    """Create a release key at `path` (mode 0600) on a workstation; refuse to replace a file."""
    if path.exists():
        raise KeyFileError(f"{path} exists; a release key is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _write_new_key(path)
    return PublicKeyInfo(role=KeyRole.RELEASE, key_id=key_id(key), public_key=public_key_b64(key))


def load_key(keys_dir: Path, role: KeyRole) -> Ed25519PrivateKey:
    """Read a private key of `keys_dir`, refusing files readable by group or others."""
    path = key_path(keys_dir, role)
    if role is KeyRole.RELEASE and not path.exists():
        raise KeyFileError(
            f"{path}: this gateway holds no release key (as it should: sign on the workstation "
            "with `edge-gateway models sign`, then `edge-gateway models import` here; a "
            "single-box lab makes one with `edge-gateway keys init`)"
        )
    return load_key_file(path, role)


def load_key_file(path: Path, role: KeyRole = KeyRole.RELEASE) -> Ed25519PrivateKey:
    """Read a private key file, refusing files readable by group or others."""
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


def device_trust(keys_dir: Path, release_keys: dict[str, str] | None = None) -> dict[str, dict]:
    """`{"release_keys": {...}, "gateway_keys": {...}}` for a device config (public keys only).

    Release keys: `release_keys` (the gateway config's `trust.release_keys`) plus a release key
    kept in `keys_dir` (single-box lab). KeyFileError if there is none at all.
    """
    rel = dict(release_keys or {})
    if key_path(keys_dir, KeyRole.RELEASE).exists():
        info = public_info(keys_dir, KeyRole.RELEASE)
        rel[info.key_id] = info.public_key
    if not rel:
        raise KeyFileError(
            "no release public key known: add the workstation's key (printed by `keys init "
            "--release-only`) under trust.release_keys in the gateway config"
        )
    gw = public_info(keys_dir, KeyRole.GATEWAY)
    return {"release_keys": rel, "gateway_keys": {gw.key_id: gw.public_key}}


def export_yaml(keys_dir: Path, release_keys: dict[str, str] | None = None) -> str:
    """The `trust:` and `ota:` lines a device config needs to trust this gateway (public keys
    only)."""
    trust = device_trust(keys_dir, release_keys)
    lines = ["ota:", "  enabled: true", "trust:", "  release_keys:"]
    lines += [f"    {kid}: {pub}" for kid, pub in trust["release_keys"].items()]
    lines += ["  gateway_keys:"]
    lines += [f"    {kid}: {pub}" for kid, pub in trust["gateway_keys"].items()]
    return "\n".join(lines) + "\n"
