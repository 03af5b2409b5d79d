"""Every route of the web page, and the static files (CSS, JS) served from this package."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from agent.gateway.web import (
    pages_auth,
    pages_fleet,
    pages_live,
    pages_models,
    pages_review,
    pages_rollouts,
    sse,
)
from agent.gateway.web.render import STATIC

PAGES = (pages_auth, pages_fleet, pages_rollouts, pages_models, pages_live, pages_review, sse)


def web_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [route for module in PAGES for route in module.ROUTES]
    routes.append(Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"))
    return routes
