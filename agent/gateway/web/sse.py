"""Live parts over server-sent events: the page's script swaps in each new HTML fragment.

A stream sends a fragment only when it changed, ends with an `end` event when its rollout
ended, and closes after `MAX_STREAM_S` (the browser reconnects by itself), so a forgotten tab
holds nothing for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from agent.gateway.api.context import ctx
from agent.gateway.web.guard import web
from agent.gateway.web.pages_fleet import fleet_table
from agent.gateway.web.pages_rollouts import rollout_body
from agent.gateway.web.views import FleetQuery

INTERVAL_S = 1.0
FLEET_INTERVAL_S = 2.0
MAX_STREAM_S = 600.0


def sse_data(html: str, event: str | None = None) -> str:
    """One SSE message carrying `html` (each line its own `data:` field)."""
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in html.splitlines() or [""]) + "\n"


async def changes(
    request: Request, produce: Callable[[], tuple[str, bool]], interval_s: float
) -> AsyncIterator[str]:
    """Each new fragment of `produce` until it says done, the client leaves, or time is up."""
    last = None
    until = time.monotonic() + MAX_STREAM_S
    yield "retry: 3000\n\n"
    while time.monotonic() < until and not await request.is_disconnected():
        html, done = produce()
        if html != last:
            yield sse_data(html)
            last = html
        if done:
            yield sse_data("", "end")
            return
        await asyncio.sleep(interval_s)


def stream(request: Request, produce: Callable[[], tuple[str, bool]], interval: float) -> Response:
    return StreamingResponse(
        changes(request, produce, interval),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@web
async def rollout_events(request: Request) -> Response:
    """GET /events/rollouts/<id>: the rollout's waves and devices, while it runs."""
    c, rid = ctx(request), int(request.path_params["id"])
    return stream(request, lambda: rollout_body(c, rid), INTERVAL_S)


@web
async def fleet_events(request: Request) -> Response:
    """GET /events/fleet[?q=&state=&sort=&dir=]: the device table."""
    c, query = ctx(request), FleetQuery.parse(request.query_params)
    return stream(request, lambda: (fleet_table(c, query), False), FLEET_INTERVAL_S)


ROUTES = [
    Route("/events/rollouts/{id:int}", rollout_events, methods=["GET"]),
    Route("/events/fleet", fleet_events, methods=["GET"]),
]
