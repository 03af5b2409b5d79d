"""Rollouts: list, one, deploy, abort. Admin routes."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent.contracts.ids import SafeId
from agent.gateway.api.auth import admin
from agent.gateway.api.context import ApiContext, ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.api.parse import int_param, parse_body
from agent.gateway.api.routing import routes_under
from agent.gateway.fleet import DeployRequest, Rollout, request_with_defaults, rollout_view
from agent.gateway.gate_view import rollout_gate
from agent.util.models import StrictModel


class DeployBody(StrictModel):
    """Body of POST /v1/rollouts."""

    model: SafeId
    """Model name."""
    version: int = Field(ge=1)
    """Model version to roll out."""
    devices: list[SafeId] = Field(min_length=1)
    """Target devices, canary first."""
    canary: int | None = Field(None, ge=0)
    """Canary devices; config default if null."""
    wave_size: int | None = Field(None, ge=1)
    """Devices per wave after the canary."""
    max_failures: int | None = Field(None, ge=1)
    """Failures that abort the rollout."""
    timeout_s: float | None = Field(None, gt=0)
    """Per-device deadline in seconds."""


class RollbackBody(StrictModel):
    """Body of POST /v1/rollouts/<id>/rollback (optional): how the devices go back."""

    canary: int | None = Field(None, ge=0)
    """Canary devices; config default if null."""
    wave_size: int | None = Field(None, ge=1)
    """Devices per wave after the canary."""
    max_failures: int | None = Field(None, ge=1)
    """Failures that abort the rollback."""
    timeout_s: float | None = Field(None, gt=0)
    """Per-device deadline in seconds."""


class AbortBody(StrictModel):
    """Body of POST /v1/rollouts/<id>/abort (optional)."""

    reason: str = Field("aborted by operator", max_length=500)
    """Why, for the record."""


def deploy_request(body: DeployBody | RollbackBody, c: ApiContext) -> DeployRequest:
    """The body with the config's defaults filled in (a rollback's model and devices are filled
    in by `Fleet.rollback`)."""
    if isinstance(body, DeployBody):
        return request_with_defaults(body.model, body.version, body.devices, body, c.cfg.rollout)
    return request_with_defaults("", 0, [], body, c.cfg.rollout)


def view(r: Rollout, c: ApiContext) -> dict[str, Any]:
    """The rollout view plus the signed gate figures of its model and of what it replaces."""
    out = rollout_view(r, c.clock(), ota_states(c))

    def manifest_of(ref: str) -> dict[str, Any] | None:
        name, _, version = ref.rpartition("@")
        row = c.store.model(name, int(version)) if version.isdigit() else None
        return None if row is None else row.manifest

    previous = [d["previous"] for d in out["devices"] if d["previous"]]
    out["gate"] = rollout_gate(
        manifest_of(f"{r.model_name}@{r.model_version}"), previous, manifest_of
    )
    return out


def ota_states(c: ApiContext) -> dict[str, dict[str, Any] | None]:
    """Each enrolled device's last ota/state payload."""
    return {d.id: d.ota for d in c.fleet.devices.all()}


@admin
async def list_rollouts(request: Request) -> Response:
    """GET /v1/rollouts: every rollout, oldest first."""
    c = ctx(request)
    rollouts = (c.fleet.rollout(rid) for rid in c.store.rollout_ids())
    return JSONResponse([view(r, c) for r in rollouts if r is not None])


@admin
async def get_rollout(request: Request) -> Response:
    """GET /v1/rollouts/<id>: one rollout with each device's state."""
    c = ctx(request)
    rid = int_param(request, "id", "rollout id")
    r = c.fleet.rollout(rid)
    if r is None:
        raise HttpProblem(404, f"no rollout {rid}")
    return JSONResponse(view(r, c))


@admin
async def post_rollout(request: Request) -> Response:
    """POST /v1/rollouts: start a rollout (DeployRefused -> a status in `errors`)."""
    c = ctx(request)
    body = await parse_body(request, DeployBody)
    r = c.fleet.deploy(deploy_request(body, c))
    return JSONResponse(view(r, c), status_code=201)


@admin
async def post_abort(request: Request) -> Response:
    """POST /v1/rollouts/<id>/abort: abort a running rollout."""
    c = ctx(request)
    rid = int_param(request, "id", "rollout id")
    body = await parse_body(request, AbortBody, optional=True)
    r = c.fleet.abort(rid, body.reason)
    return JSONResponse(view(r, c))


@admin
async def post_rollback(request: Request) -> Response:
    """POST /v1/rollouts/<id>/rollback: send the devices of a finished rollout back."""
    c = ctx(request)
    rid = int_param(request, "id", "rollout id")
    body = await parse_body(request, RollbackBody, optional=True)
    r = c.fleet.rollback(rid, deploy_request(body, c))
    return JSONResponse(rollout_view(r, c.clock()), status_code=201)


ROUTES = routes_under(
    "/v1/rollouts",
    {
        "": {"GET": list_rollouts, "POST": post_rollout},
        "/{id}": {"GET": get_rollout},
        "/{id}/abort": {"POST": post_abort},
        "/{id}/rollback": {"POST": post_rollback},
    },
)
