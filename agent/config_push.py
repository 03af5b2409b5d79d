"""Camera config pushed from the gateway, on the device: check, write, reload, answer.

Commands (`edge.config-command/1`) arrive on `edge/<device>/config/command` in paho's thread
and are queued; the daemon's main thread handles them in `tick()`, in the order of the OTA
command checks and with the same functions (`agent.trust.ota`, `agent.ota.validate`):

1. size and shape                                   - `parse_config_command`
2. gateway signature (keys from `trust:`), then device id
3. redelivery of the latest push (answered again) or a replay
4. expiry, then sequence above the last accepted     (from here on the sequence is consumed)
5. the cameras validate with the device's own models (the main file with these cameras)
6. written atomically as the overlay under the state dir (`agent.camera_overlay`), reloaded

Every push ends in one retained answer on `edge/<device>/config/state`: `applied` with the
running `config_sha256`, or `rejected` with a reason; a rejected push changes nothing. The
config ledger (`<state_dir>/config/ledger.json`, the OTA `Ledger` model) remembers the
highest sequence and the handled ids; a ledger that cannot be read refuses every push.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import structlog
from pydantic import ValidationError

from agent.camera_overlay import OVERLAY_DIR, overlay_path, write_pushed_cameras
from agent.contracts.canonical import canonical_json
from agent.contracts.config_command import (
    ConfigCommand,
    ConfigStateMessage,
    parse_config_command,
)
from agent.contracts.ota import OtaRejectedError, Reason
from agent.contracts.payloads import rfc3339_ms
from agent.contracts.topics import Topics
from agent.live_reload import Reloader
from agent.ota.validate import Delivery, Ledger, check_authentic, check_fresh, classify_delivery
from agent.trust.signing import PublicKeyLike
from agent.util.errors import ReasonError
from agent.util.files import atomic_write

log = structlog.get_logger(__name__)

LEDGER_FILE = "ledger.json"
STATE_FILE = "state.json"


class ConfigLink(Protocol):
    """The publisher as the handler sees it."""

    def subscribe(
        self, topic: str, callback: Callable[[str, bytes], None], qos: int = 1
    ) -> None: ...

    def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None: ...


class ConfigRejected(ReasonError[str]):
    """A push refused after its sequence was consumed (config-specific reasons)."""


class ConfigLedgerStore:
    """The config push ledger on disk (atomic writes)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / OVERLAY_DIR / LEDGER_FILE

    def read(self) -> Ledger:
        """The ledger (empty when no push was ever accepted). Raises OtaRejectedError
        (`ledger_unreadable`) when the file exists but cannot be read."""
        try:
            return Ledger.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return Ledger()
        except (OSError, ValidationError) as err:
            raise OtaRejectedError(
                Reason.LEDGER_UNREADABLE,
                f"{self.path}: {str(err).splitlines()[0][:300]}; an operator must fix or remove it",
            ) from None

    def write(self, ledger: Ledger) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, ledger.model_dump_json().encode("utf-8"), mode=0o640)


class ConfigPushHandler:
    """Handles config pushes for one device (see the module docstring)."""

    def __init__(
        self,
        device: str,
        gateway_keys: dict[str, PublicKeyLike],
        state_dir: Path,
        topics: Topics,
        link: ConfigLink,
        reloader: Reloader,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._device = device
        self._keys = gateway_keys
        self._state_dir = Path(state_dir)
        self._topics = topics
        self._link = link
        self._reloader = reloader
        self._clock = clock
        self._ledger = ConfigLedgerStore(state_dir)
        self._inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._state_file = self._state_dir / OVERLAY_DIR / STATE_FILE  # the latest answer

    def listen(self) -> None:
        """Subscribe (now and on every reconnect); commands wait in a queue for `tick`."""
        self._link.subscribe(self._topics.config_command, lambda _t, p: self._inbox.put(p))

    def tick(self) -> None:
        """Handle every queued push (daemon main thread)."""
        while True:
            try:
                payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            self.handle(payload)

    def handle(self, payload: bytes) -> ConfigStateMessage:
        """Check and apply one push; publish and return the retained answer."""
        command: ConfigCommand | None = None
        try:
            command = parse_config_command(payload)
            answer = self._accept(command)
        except OtaRejectedError as err:
            answer = self._answer(command, "rejected", err.reason.value, err.detail)
        except ConfigRejected as err:
            answer = self._answer(command, "rejected", err.reason, err.detail)
        if answer.state == "rejected":
            log.warning(
                "config push rejected",
                reason=answer.reason,
                detail=answer.detail,
                command_id=answer.command_id,
            )
        data = canonical_json(answer.model_dump(mode="json", by_alias=True))
        if answer.command_id is not None:  # a redelivery is answered with the same state
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self._state_file, data, mode=0o640)
        self._link.publish_retained(self._topics.config_state, data)
        return answer

    def _last_answer(self, command_id: str) -> ConfigStateMessage | None:
        try:
            last = ConfigStateMessage.model_validate_json(self._state_file.read_bytes())
        except (OSError, ValidationError):
            return None
        return last if last.command_id == command_id else None

    def _accept(self, command: ConfigCommand) -> ConfigStateMessage:
        check_authentic(command, self._keys, self._device)
        ledger = self._ledger.read()
        if classify_delivery(command, ledger) is Delivery.DUPLICATE:
            last = self._last_answer(command.command_id)
            if last is not None:
                return last
            raise OtaRejectedError(
                Reason.REPLAYED, f"push {command.command_id} was already handled"
            )
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        check_fresh(command, ledger, now)
        self._ledger.write(ledger.record(command))
        problems = self._reloader.check_cameras(command.cameras)
        if problems:
            raise ConfigRejected("invalid_config", "; ".join(problems)[:3900])
        self._apply(command)
        log.info("config push applied", command_id=command.command_id, sequence=command.sequence)
        return self._answer(command, "applied", None, None)

    def _apply(self, command: ConfigCommand) -> None:
        """Write the overlay and reload; the previous overlay comes back if the reload fails."""
        path = overlay_path(self._state_dir)
        previous = path.read_bytes() if path.exists() else None
        write_pushed_cameras(self._state_dir, command.wire())
        outcome = self._reloader.reload("push")
        if outcome.applied:
            return
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, previous, mode=0o640)
        raise ConfigRejected("apply_failed", "; ".join(outcome.problems)[:3900])

    def _answer(
        self, command: ConfigCommand | None, state: str, reason: str | None, detail: str | None
    ) -> ConfigStateMessage:
        try:
            last = self._ledger.read().last_sequence
        except OtaRejectedError:
            last = None
        return ConfigStateMessage(
            device=self._device,
            state=state,  # type: ignore[arg-type]
            command_id=None if command is None else command.command_id,
            sequence=None if command is None else command.sequence,
            config_sha256=self._reloader.config_sha256,
            reason=reason,
            detail=detail,
            ts=rfc3339_ms(self._clock()),
            last_sequence=last,
        )
