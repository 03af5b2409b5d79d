"""Camera config pushes (`edge-gateway config push`). Admin route."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.gateway.api.auth import admin
from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.api.parse import id_param, parse_body
from agent.util.models import StrictModel


class PushBody(StrictModel):
    """Body of POST /v1/devices/<id>/config."""

    cameras: list[dict[str, Any]] = Field(min_length=1)
    """The device's `cameras:` section (no secrets)."""


@admin
async def push_config(request: Request) -> Response:
    """POST /v1/devices/<id>/config: sign and publish a camera config push."""
    device = id_param(request, "device", "device id")
    body = await parse_body(request, PushBody)
    pushes = ctx(request).config_pushes
    if pushes is None:
        raise HttpProblem(503, "config pushes are not available on this gateway")
    command = pushes.push(device, body.cameras)
    return JSONResponse(
        {"device": device, "command_id": command["command_id"], "sequence": command["sequence"]},
        status_code=202,
    )


ROUTES = [Route("/v1/devices/{device}/config", push_config, methods=["POST"])]
