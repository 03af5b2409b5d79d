"""Route tables: the routes of one URL prefix, written as path -> {method: handler}."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.routing import Route

Handler = Callable[..., Any]
"""A Starlette endpoint (an async function of the request)."""


def routes_under(prefix: str, table: Mapping[str, Mapping[str, Handler]]) -> list[Route]:
    """One Route per path and method of `table`, each path below `prefix`, in table order."""
    return [
        Route(prefix + path, handler, methods=[method])
        for path, handlers in table.items()
        for method, handler in handlers.items()
    ]
