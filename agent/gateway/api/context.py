"""What every handler needs, kept on `app.state.ctx` (no closures over the app's arguments)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from agent.gateway.config import GatewayConfig
from agent.gateway.db import Store
from agent.gateway.fleet import Fleet
from agent.gateway.quota import IntakeQuota
from agent.gateway.review_store import ReviewStore


@dataclass(frozen=True)
class ApiContext:
    """The gateway parts the HTTP handlers use."""

    cfg: GatewayConfig
    store: Store
    fleet: Fleet
    quota: IntakeQuota
    review: ReviewStore
    health: Callable[[], dict[str, Any]] = dict
    clock: Callable[[], float] = field(default=time.time)


def ctx(request: Request) -> ApiContext:
    """The context of the app serving `request`."""
    context: ApiContext = request.app.state.ctx
    return context
