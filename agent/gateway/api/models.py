"""The model registry, read-only: list and signed manifests. Admin routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.gateway.api.auth import admin
from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.api.parse import int_param
from agent.gateway.api.views import model_view


@admin
async def list_models(request: Request) -> Response:
    """GET /v1/models: every registered model version, by name and version."""
    return JSONResponse([model_view(m) for m in ctx(request).store.models()])


@admin
async def get_manifest(request: Request) -> Response:
    """GET /v1/models/<name>/<version>: the signed manifest envelope."""
    version = int_param(request, "version", "version")
    m = ctx(request).store.model(request.path_params["name"], version)
    if m is None:
        raise HttpProblem(404, "no such model version")
    return JSONResponse(m.signed)


ROUTES = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{name}/{version}", get_manifest, methods=["GET"]),
]
