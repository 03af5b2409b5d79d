"""Camera config pushed from the gateway: the signed command and the device's retained answer.

`edge.config-command/1` on `edge/<device>/config/command` carries the `cameras:` section for
one device, signed by a gateway key over the canonical form of the JSON as received (like OTA
commands), with an expiry and a sequence number from the same per-device counter as OTA
commands. The camera objects are kept as received (the device validates them against its own
camera model, zones and lines included): this module only checks their ids and that no secret
travels in them (RTSP URLs carry the `{password}` placeholder; the device fills it in from its
environment, `password_env`).

The device answers on the retained `edge/<device>/config/state` (`edge.config-state/1`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from agent.contracts.ids import check_id
from agent.contracts.ota import (
    MAX_COMMAND_BYTES,
    CommandId,
    OtaRejectedError,
    Reason,
    SignedCommand,
    command_object,
)
from agent.util.models import StrictModel

CONFIG_COMMAND_SCHEMA = "edge.config-command/1"
CONFIG_STATE_SCHEMA = "edge.config-state/1"
PASSWORD_PLACEHOLDER = "{password}"
SECRET_KEYS = frozenset({"password", "passwd", "secret", "token"})
"""Keys that may never carry a value in a pushed camera (`*_env` names the variable instead)."""

CONFIG_REASONS = (
    "malformed, payload_too_large, unsigned, unknown_key, bad_signature, wrong_device, "
    "expired_command, replayed, old_sequence, ledger_unreadable (as for OTA commands); "
    "invalid_config (the cameras do not validate on the device: `detail` lists each problem "
    "by field path), apply_failed"
)


def secret_problems(cameras: list[Any]) -> list[str]:
    """Where a literal secret sits in pushed cameras (empty: none). Pure."""
    out = []
    for path, key, value in _walk(cameras, "cameras"):
        if key.lower() in SECRET_KEYS and value not in (None, ""):
            out.append(f"{path}: secrets are never pushed; name an environment variable instead")
        if isinstance(value, str) and any(_has_password(u) for u in _URL.findall(value)):
            out.append(
                f"{path}: a URL holds a literal password; write '{PASSWORD_PLACEHOLDER}' "
                "and set password_env (the device reads the variable)"
            )
    return out


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s!\"']+")
"""URLs inside a string (a source URL, or one inside a GStreamer pipeline)."""


def _has_password(url: str) -> bool:
    try:
        userinfo = urlsplit(url).netloc.rpartition("@")[0]
    except ValueError:
        return "@" in url  # unparseable with credentials-like parts: refuse, never guess
    return ":" in userinfo and userinfo.partition(":")[2] != PASSWORD_PLACEHOLDER


def _walk(node: Any, path: str, key: str = "") -> Iterator[tuple[str, str, Any]]:
    yield path, key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}", str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}.{i}", key)


class ConfigCommand(SignedCommand):
    """The `cameras:` section for one device, signed by a gateway key."""

    schema_: Literal["edge.config-command/1"] = Field(CONFIG_COMMAND_SCHEMA, alias="schema")
    """Command schema id."""
    command_id: CommandId
    """Unique id of this push ([A-Za-z0-9._-], 1-64); a redelivery keeps it."""
    sequence: int = Field(ge=1)
    """Per-device counter shared with OTA commands; must exceed the last config push the device
    accepted."""
    cameras: list[dict[str, Any]] = Field(min_length=1)
    """The device's `cameras:` section (same fields as in its config file, zones and lines
    included); replaces the main file's cameras. No secrets: RTSP URLs carry `{password}` and
    `password_env` names the device's environment variable."""

    @field_validator("cameras")
    @classmethod
    def _ids_and_no_secrets(cls, cams: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [check_id(str(c.get("id", "")), "camera id") for c in cams]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        problems = secret_problems(cams)
        if problems:
            raise ValueError("; ".join(problems))
        return cams


class ConfigStateMessage(StrictModel):
    """Retained on edge/<device>/config/state: how the device took the latest config push."""

    schema_: Literal["edge.config-state/1"] = Field(CONFIG_STATE_SCHEMA, alias="schema")
    """Payload schema id."""
    device: str
    """Device id."""
    state: Literal["applied", "rejected"]
    """applied: the cameras run now; rejected: nothing changed."""
    command_id: str | None = None
    """The push this answers; null when it could not be parsed."""
    sequence: int | None = None
    """That push's sequence, when known."""
    config_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the config running after this answer (as in `status`)."""
    reason: str | None = Field(None, description=f"Why it was rejected: {CONFIG_REASONS}.")
    detail: str | None = Field(None, max_length=4000)
    """Human-readable explanation."""
    ts: str
    """When the device answered, UTC RFC 3339 with ms."""
    last_sequence: int | None = Field(None, ge=0)
    """Highest config-push sequence the device has accepted; the gateway numbers its next command
    above it."""


def parse_config_command(payload: bytes, max_bytes: int = MAX_COMMAND_BYTES) -> ConfigCommand:
    """Parse an untrusted config command (signature not checked). Raises OtaRejectedError
    (`payload_too_large`, `malformed`)."""
    data = command_object(payload, max_bytes)
    try:
        return ConfigCommand.from_wire(data)
    except ValueError as err:  # pydantic.ValidationError subclasses ValueError
        raise OtaRejectedError(Reason.MALFORMED, str(err)[:1500]) from None
