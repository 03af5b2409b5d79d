"""Devices: the fleet view and the device list (enrol, remove). Admin routes."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.contracts.ids import SafeId
from agent.gateway.api.auth import admin
from agent.gateway.api.context import ctx
from agent.gateway.api.parse import id_param, parse_body
from agent.gateway.api.views import device_view, utc_day
from agent.gateway.tokens import new_token, token_sha256
from agent.util.models import StrictModel


class EnrolBody(StrictModel):
    """Body of POST /v1/devices."""

    device: SafeId
    """Device id to enrol (its `device.id`)."""
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of a token made elsewhere; null: the gateway makes a token and returns it once."""


@admin
async def list_devices(request: Request) -> Response:
    """GET /v1/devices: every enrolled device with what it last reported."""
    c = ctx(request)
    now = c.clock()
    day = utc_day(now)
    pushes = c.config_pushes
    return JSONResponse(
        [
            device_view(
                d,
                now,
                c.cfg.offline_after_s,
                c.quota.usage(d.id, day),
                None if pushes is None else pushes.view(d.id),
            )
            for d in c.fleet.devices.all()
        ]
    )


@admin
async def enrol_device(request: Request) -> Response:
    """POST /v1/devices: enrol a device; answers its new token once (unless a hash was given)."""
    body = await parse_body(request, EnrolBody)
    token = None if body.token_sha256 is not None else new_token()
    digest = body.token_sha256 if token is None else token_sha256(token)
    ctx(request).fleet.enroll(body.device, digest)
    return JSONResponse({"device": body.device, "token": token}, status_code=201)


@admin
async def remove_device(request: Request) -> Response:
    """DELETE /v1/devices/<id>: take a device off the list."""
    device = id_param(request, "device", "device id")
    ctx(request).fleet.remove(device)
    return JSONResponse({"device": device, "removed": True})


ROUTES = [
    Route("/v1/devices", list_devices, methods=["GET"]),
    Route("/v1/devices", enrol_device, methods=["POST"]),
    Route("/v1/devices/{device}", remove_device, methods=["DELETE"]),
]
