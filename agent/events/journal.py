"""Open events on disk, so a daemon killed mid-event has them closed by its next start.

`<state_dir>/events-open.json` maps each open event's id to its latest message (JSON). It is
rewritten atomically (temp file, rename; `agent.util.files.atomic_write`) before each `new`,
`update` and `end` is handed to the outbox, so after a kill -9 it names every event whose `new`
may have been published and whose `end` was not handed over. The next start sends an `end` with
`end_reason: restart` for each, then empties the file.

The rewrite runs on the inference path, so it is not fsynced (`durable=False`): an fsync took
~33 ms on the loaded test machine, per event. The rename survives a crash of the process; after
a power cut the file may miss the last changes (the outbox, fsynced, may then hold a `new`
whose event the next start does not close).
"""

from __future__ import annotations

import json
from pathlib import Path

import structlog
from pydantic import ValidationError

from agent.contracts.events import EventMessage
from agent.util.files import atomic_write

log = structlog.get_logger(__name__)

FILE_NAME = "events-open.json"


class OpenEvents:
    """The open-event file of one daemon (all cameras)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._open: dict[str, dict[str, object]] = {}

    def load_previous(self) -> list[EventMessage]:
        """The events a previous run left open (unreadable entries are logged and skipped)."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as err:
            log.error("open-event file unreadable; its events stay open", error=str(err))
            return []
        out = []
        for body in data.values() if isinstance(data, dict) else []:
            try:
                out.append(EventMessage.model_validate(body))
            except ValidationError as err:
                log.error("open event unreadable; skipped", error=str(err).splitlines()[0])
        return out

    def put(self, msg: EventMessage) -> None:
        """Record `msg` as its event's latest state."""
        self._open[msg.id] = msg.model_dump(mode="json", by_alias=True)
        self._write()

    def remove(self, event_id: str) -> None:
        if self._open.pop(event_id, None) is not None:
            self._write()

    def clear(self) -> None:
        self._open.clear()
        self._write()

    def _write(self) -> None:
        data = json.dumps(self._open, separators=(",", ":")).encode()
        atomic_write(self.path, data, durable=False)
