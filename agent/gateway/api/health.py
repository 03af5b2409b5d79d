"""Gateway health and counters. An admin route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.gateway.api.auth import admin
from agent.gateway.api.context import ctx


@admin
async def get_health(request: Request) -> Response:
    """GET /v1/health: liveness, message counters, running rollouts, live fields."""
    c = ctx(request)
    return JSONResponse(
        {
            "ok": True,
            **c.fleet.stats.view(),
            "ignored_reports": c.fleet.ignored_reports,
            "active_rollouts": sorted(c.fleet.active),
            **c.health(),
        }
    )


ROUTES = [Route("/v1/health", get_health, methods=["GET"])]
