"""The working parts of one OTA slot that its runner, probation watch and intake share."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.ota.activation import Activator
    from agent.ota.config import OtaConfig
    from agent.ota.host import ModelHost
    from agent.ota.journal import StateJournal
    from agent.ota.store import ModelStore


@dataclass(frozen=True, eq=False)
class SlotParts:
    """One slot's OTA settings, model host, store, journal and activator, and the event that
    tells its job thread to stop (set when the manager stops)."""

    cfg: OtaConfig
    host: ModelHost
    store: ModelStore
    journal: StateJournal
    activator: Activator
    stop: threading.Event
