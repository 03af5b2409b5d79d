"""Models: the registry, and which devices run each version."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent.gateway.api.context import ctx
from agent.gateway.web.guard import web
from agent.gateway.web.render import page
from agent.gateway.web.views import model_row, running_models


@web
async def models_page(request: Request) -> Response:
    """GET /models: every registered version, newest first."""
    c = ctx(request)
    running = running_models(c.fleet.devices.all())
    rows = [model_row(m, running) for m in reversed(c.store.models())]
    registered = {r["key"] for r in rows}
    unregistered = {k: v for k, v in running.items() if k not in registered}
    return page(request, "models.html", models=rows, unregistered=unregistered)


ROUTES = [Route("/models", models_page, methods=["GET"])]
