"""Fleet: every device with its state; one device with its health and OTA history."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from agent.gateway.api.context import ApiContext, ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.db import committed_floors
from agent.gateway.web.guard import web
from agent.gateway.web.render import fragment, page
from agent.gateway.web.views import FLEET_STATES, SORT_KEYS, FleetQuery, fleet_counts, fleet_row
from agent.gateway.web.views import fleet_rows as select_rows


def all_rows(c: ApiContext) -> list[dict[str, Any]]:
    now = c.clock()
    return [fleet_row(d, now, c.cfg.offline_after_s) for d in c.fleet.devices.all()]


def fleet_table(c: ApiContext, query: FleetQuery) -> str:
    """The device table (the page and its live updates render the same fragment)."""
    rows = all_rows(c)
    return fragment(
        "_fleet_table.html", rows=select_rows(rows, query), counts=fleet_counts(rows), q=query
    )


@web
async def home(request: Request) -> Response:
    return RedirectResponse("/fleet", status_code=303)


@web
async def fleet(request: Request) -> Response:
    """GET /fleet[?q=&state=&sort=&dir=]."""
    query = FleetQuery.parse(request.query_params)
    return page(
        request,
        "fleet.html",
        table=fleet_table(ctx(request), query),
        q=query,
        states=FLEET_STATES,
        sorts=SORT_KEYS,
        live=f"/events/fleet?{request.url.query}",
    )


def ota_history(c: ApiContext, device: str, limit: int = 20) -> list[dict[str, Any]]:
    """The device's part in the latest rollouts, newest first."""
    rows = c.store.read(
        "SELECT r.id, r.model_name, r.model_version, r.action, r.state AS rollout_state, "
        "d.state, d.ota_state, d.reason, d.detail, d.sent_at, d.finished_at "
        "FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id "
        "WHERE d.device=? ORDER BY r.id DESC LIMIT ?",
        (device, limit),
    )
    return [dict(r) for r in rows]


@web
async def device_page(request: Request) -> Response:
    """GET /devices/<id>."""
    c = ctx(request)
    device = request.path_params["device"]
    row = c.fleet.devices.get(device)
    if row is None:
        raise HttpProblem(404, f"no enrolled device {device!r}")
    return page(
        request,
        "device.html",
        d=fleet_row(row, c.clock(), c.cfg.offline_after_s),
        history=ota_history(c, device),
        floors=committed_floors(c.store, device),
    )


ROUTES = [
    Route("/", home, methods=["GET"]),
    Route("/fleet", fleet, methods=["GET"]),
    Route("/devices/{device}", device_page, methods=["GET"]),
]
