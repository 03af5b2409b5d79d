"""Camera config pushes from the gateway: sign, publish, follow the devices' answers.

`push(device, cameras)` signs an `edge.config-command/1` with the gateway key; its sequence
comes from the same persisted per-device counter as OTA commands (`Store.next_seq`), above
what the device last reported accepting (on `ota/state` or `config/state`), so every command
a device receives is numbered above the ones before. The device answers on its retained
`config/state`; `view(device)` is the last push and its answer for `edge-gateway devices`.
A push not answered yet is remembered in memory only; the retained answer is read again after
a gateway restart.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from agent.contracts.canonical import canonical_json
from agent.contracts.config_command import ConfigCommand, ConfigStateMessage
from agent.contracts.ota import format_rfc3339
from agent.contracts.topics import Topics
from agent.gateway.fleet import Fleet
from agent.trust.signing import sign

log = structlog.get_logger(__name__)

Publish = Callable[[str, bytes], None]


class ConfigPushRefused(Exception):
    """A push the gateway will not sign (unknown device, bad cameras); the message says why."""


@dataclass(eq=False)
class ConfigPushes:
    """Signs and publishes config pushes to `fleet`'s devices, in its store and sequence space
    (above what the fleet's ingest saw each device accept on `ota/state`), and records each
    device's answer. Thread-safe."""

    fleet: Fleet
    key: Ed25519PrivateKey = field(repr=False)
    publish: Publish
    ttl_s: float = 900.0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _sent: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    """device -> last push sent"""
    _answers: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    """device -> its retained config/state"""
    _reported: dict[str, int] = field(default_factory=dict, init=False)
    """device -> last config sequence it accepted"""

    def push(self, device: str, cameras: list[Any]) -> dict[str, Any]:
        """Sign and publish `cameras` for `device`; the signed command as sent."""
        if not self.fleet.is_enrolled(device):
            raise ConfigPushRefused(f"device {device} is not enrolled")
        now = self.fleet.clock()
        with self._lock:
            floor = max(
                self.fleet.ingest.reported_sequence.get(device, 0), self._reported.get(device, 0)
            )
            seq = self.fleet.store.next_seq(device, at_least=floor + 1)
        try:
            command = ConfigCommand(
                command_id=f"cfg-{uuid.uuid4().hex[:16]}",
                device=device,
                sequence=seq,
                issued=format_rfc3339(now),
                expires=format_rfc3339(now + self.ttl_s),
                cameras=cameras,
            )
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
            )
            raise ConfigPushRefused(problems) from None
        wire = sign(command, self.key).model_dump(mode="json", by_alias=True)
        with self._lock:
            self._sent[device] = {"command_id": command.command_id, "sequence": seq, "sent": now}
        self.publish(Topics(device, self.fleet.prefix).config_command, canonical_json(wire))
        log.info("config pushed", device=device, command_id=command.command_id, sequence=seq)
        return wire

    def on_state(self, device: str, payload: bytes) -> bool:
        """Record a device's `config/state`; False when it is malformed or not enrolled."""
        if not payload or not self.fleet.is_enrolled(device):
            return False
        try:
            msg = ConfigStateMessage.model_validate_json(payload)
        except ValidationError:
            log.warning("malformed config state ignored", device=device)
            return False
        if msg.device != device:
            return False
        with self._lock:
            self._answers[device] = msg.model_dump(mode="json", by_alias=True)
            if msg.last_sequence is not None:
                self._reported[device] = max(msg.last_sequence, self._reported.get(device, 0))
        return True

    def view(self, device: str) -> dict[str, Any]:
        """The last push sent to `device` and the device's latest answer (pending: no answer
        to the last push yet)."""
        with self._lock:
            sent = self._sent.get(device)
            answer = self._answers.get(device)
        pending = sent is not None and (
            answer is None or answer.get("command_id") != sent["command_id"]
        )
        return {
            "last_push": None if answer is None else answer.get("command_id"),
            "result": "pending" if pending else (None if answer is None else answer["state"]),
            "reason": None if pending or answer is None else answer.get("reason"),
            "detail": None if pending or answer is None else answer.get("detail"),
            "config_sha256": None if answer is None else answer.get("config_sha256"),
        }
