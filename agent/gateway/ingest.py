"""Device messages from MQTT (status, health, OTA state) -> the device list and the rollouts.

Order of checks for each message: a topic device id that breaks the id rule is malformed;
the payload must parse and name the topic's device (else malformed, counted per device only
for enrolled ids); an id that is not enrolled is counted in `unknown_device_messages` and
ignored; an OTA state for a command id no rollout ever sent is counted in
`unknown_command_states` and ignored (noise, never progress).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from agent.contracts.ids import check_id
from agent.contracts.ota import OtaStateMessage, parse_rfc3339
from agent.contracts.payloads import HealthMessage, StatusMessage
from agent.gateway.devices import DeviceBook

log = structlog.get_logger(__name__)

RECENT_UNKNOWN = 16  # how many distinct unknown ids the stats remember

OtaStateHandler = Callable[[str, OtaStateMessage], None]
DeviceMessage = StatusMessage | HealthMessage | OtaStateMessage
PARSERS: dict[str, type[StatusMessage] | type[HealthMessage] | type[OtaStateMessage]] = {
    "status": StatusMessage,
    "health": HealthMessage,
    "ota/state": OtaStateMessage,
    "ota/florence2/state": OtaStateMessage,  # the Florence-2 slot: rollouts only, not `ota`
}


@dataclass
class IngestStats:
    """Counters since start (shown in /v1/health and `edge-gateway devices`)."""

    malformed: int = 0
    unknown_device_messages: int = 0
    unknown_command_states: int = 0
    recent_unknown_devices: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_UNKNOWN))

    def view(self) -> dict[str, Any]:
        return {
            "malformed_messages": self.malformed,
            "unknown_device_messages": self.unknown_device_messages,
            "unknown_command_states": self.unknown_command_states,
            "recent_unknown_devices": list(self.recent_unknown_devices),
        }


@dataclass(eq=False)
class DeviceIngest:
    """Parses, checks and records device messages; OTA states of our commands go on."""

    devices: DeviceBook
    command_sent: Callable[[str, str], bool]
    on_ota_state: OtaStateHandler
    _: KW_ONLY
    prefix: str = "edge"
    clock: Callable[[], float] = time.time
    stats: IngestStats = field(default_factory=IngestStats, init=False)
    reported_sequence: dict[str, int] = field(default_factory=dict, init=False)
    """device -> last OTA sequence it accepted"""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Handle one message on a status, ota/state or health topic."""
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != self.prefix:
            return
        device, kind = parts[1], "/".join(parts[2:])
        parser = PARSERS.get(kind)
        if parser is None or not payload:
            return  # another topic, or a cleared retained message
        try:
            check_id(device, "device id")
            msg = parser.model_validate_json(payload)
            if msg.device != device:
                raise ValueError(f"payload device {msg.device!r} != topic device {device!r}")
        except (ValidationError, ValueError) as err:
            self._malformed(device, topic, str(err).splitlines()[0][:200])
            return
        if not self.devices.is_enrolled(device):
            self._unknown_device(device, topic)
            return
        self._apply(device, msg, retained, florence=kind == "ota/florence2/state")

    def _apply(
        self, device: str, msg: DeviceMessage, retained: bool, florence: bool = False
    ) -> None:
        now = self.clock()
        data = msg.model_dump(mode="json", by_alias=True)
        if isinstance(msg, StatusMessage):
            seen = _ts(msg.ts, now) if retained else now
            self.devices.record(device, seen, online=msg.state == "online", status=data)
        elif isinstance(msg, HealthMessage):
            self.devices.record(device, now, health=data)
        elif isinstance(msg, OtaStateMessage):
            if msg.last_sequence is not None:  # true even of a command this gateway forgot
                with self._lock:
                    last = max(msg.last_sequence, self.reported_sequence.get(device, 0))
                    self.reported_sequence[device] = last
            if msg.command_id is not None and not self.command_sent(device, msg.command_id):
                self._unknown_command(device, msg.command_id)
                return
            seen = _ts(msg.ts, now) if retained else now
            self.devices.record(device, seen, ota=None if florence else data)
            self.on_ota_state(device, msg)

    def _malformed(self, device: str, topic: str, why: str) -> None:
        with self._lock:
            self.stats.malformed += 1
        if self.devices.is_enrolled(device):
            self.devices.count_malformed(device, self.clock())
        log.warning("malformed device message ignored", topic=topic, error=why)

    def _unknown_device(self, device: str, topic: str) -> None:
        with self._lock:
            self.stats.unknown_device_messages += 1
            recent = self.stats.recent_unknown_devices
            if device not in recent:
                recent.append(device)
        log.warning("message from a device that is not enrolled ignored", topic=topic)

    def _unknown_command(self, device: str, command_id: str) -> None:
        with self._lock:
            self.stats.unknown_command_states += 1
        log.warning(
            "OTA state for a command this gateway never sent ignored",
            device=device,
            command_id=command_id,
        )


def _ts(value: str, default: float) -> float:
    try:
        return parse_rfc3339(value).timestamp()
    except ValueError:
        return default
