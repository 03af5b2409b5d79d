"""Rollouts: the list, one rollout live (waves, devices), start a deploy, abort, roll back.

Every action goes through `Fleet` with the same checks as the CLI and the JSON API; a refusal
is shown on the page with its reason. Abort and rollback each have a confirmation page.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from agent.gateway.api.context import ApiContext, ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.api.parse import int_param
from agent.gateway.api.rollouts import ota_states
from agent.gateway.api.routing import routes_under
from agent.gateway.deploy_checks import DeployRefused
from agent.gateway.fleet import request_with_defaults, rollout_view
from agent.gateway.web.forms import FormError, parse_deploy, wave_options
from agent.gateway.web.guard import web
from agent.gateway.web.render import fragment, page
from agent.gateway.web.views import wave_table

LIST_LIMIT = 50


def view_of(c: ApiContext, rid: int) -> dict[str, Any]:
    r = c.fleet.rollout(rid)
    if r is None:
        raise HttpProblem(404, f"no rollout {rid}")
    return rollout_view(r, c.clock(), ota_states(c))


def rollout_body(c: ApiContext, rid: int, view: dict[str, Any] | None = None) -> tuple[str, bool]:
    """The live part of a rollout page, and whether the rollout has ended."""
    view = view or view_of(c, rid)
    html = fragment("_rollout_body.html", r=view, waves=wave_table(view))
    return html, view["state"] in ("succeeded", "aborted")


@web
async def list_page(request: Request) -> Response:
    """GET /rollouts: the latest `LIST_LIMIT`, newest first."""
    c = ctx(request)
    now = c.clock()
    ids = list(reversed(c.store.rollout_ids()))
    views = [rollout_view(r, now) for i in ids[:LIST_LIMIT] if (r := c.fleet.rollout(i))]
    return page(request, "rollouts.html", rollouts=views, more=max(0, len(ids) - LIST_LIMIT))


@web
async def rollout_page(request: Request) -> Response:
    """GET /rollouts/<id>: waves and devices, live while it runs."""
    c = ctx(request)
    rid = int_param(request, "id", "rollout id")
    view = view_of(c, rid)
    body, done = rollout_body(c, rid, view)
    return page(request, "rollout.html", r=view, body=body, done=done)


def deploy_choices(c: ApiContext) -> dict[str, Any]:
    """Models and devices the deploy form offers, and the config's defaults."""
    now = c.clock()
    devices = [
        {
            "id": d.id,
            "online": d.online and d.last_seen is not None,
            "model": (d.status or {}).get("model"),
            "seen_s": None if d.last_seen is None else now - d.last_seen,
        }
        for d in c.fleet.devices.all()
    ]
    models = [f"{m.name}@{m.version}" for m in c.store.models()]
    return {"models": models, "devices": devices, "defaults": c.cfg.rollout}


@web
async def new_page(request: Request) -> Response:
    """GET /rollouts/new: the deploy form."""
    return page(request, "deploy.html", form={}, ticked=[], **deploy_choices(ctx(request)))


@web
async def deploy(request: Request) -> Response:
    """POST /rollouts: start a rollout (refusals shown on the form, 409/400)."""
    c = ctx(request)
    form = await request.form()
    ticked = [str(v) for v in form.getlist("devices")]
    try:
        f = parse_deploy(form, ticked)
        d = c.cfg.rollout
        name, version = f.target
        r = c.fleet.deploy(request_with_defaults(name, version, f.devices, f, d))
    except (FormError, DeployRefused) as err:
        status = 409 if isinstance(err, DeployRefused) else 400
        message = err.message if isinstance(err, DeployRefused) else str(err)
        return page(
            request,
            "deploy.html",
            status=status,
            error=message,
            form=dict(form),
            ticked=ticked,
            **deploy_choices(c),
        )
    return RedirectResponse(f"/rollouts/{r.id}", status_code=303)


@web
async def confirm_page(request: Request) -> Response:
    """GET /rollouts/<id>/abort or /rollback: what will happen, and the button."""
    c = ctx(request)
    rid = int_param(request, "id", "rollout id")
    action = request.url.path.rsplit("/", 1)[1]
    return page(request, "confirm.html", r=view_of(c, rid), action=action, defaults=c.cfg.rollout)


def _refused(request: Request, rid: int, action: str, error: str) -> Response:
    """The confirm page again (409) with the reason an abort or rollback was refused."""
    c = ctx(request)
    r = view_of(c, rid)
    return page(
        request, "confirm.html", status=409, r=r, action=action, error=error, defaults=c.cfg.rollout
    )


@web
async def abort(request: Request) -> Response:
    """POST /rollouts/<id>/abort."""
    c = ctx(request)
    rid = int_param(request, "id", "rollout id")
    form = await request.form()
    reason = str(form.get("reason") or "").strip()[:500] or "aborted from the web page"
    try:
        c.fleet.abort(rid, reason)
    except DeployRefused as err:
        return _refused(request, rid, "abort", err.message)
    return RedirectResponse(f"/rollouts/{rid}", status_code=303)


@web
async def rollback(request: Request) -> Response:
    """POST /rollouts/<id>/rollback: a rollback rollout; on to its page."""
    c = ctx(request)
    rid = int_param(request, "id", "rollout id")
    form = await request.form()
    d = c.cfg.rollout
    try:
        r = c.fleet.rollback(rid, request_with_defaults("", 0, [], wave_options(form), d))
    except (FormError, DeployRefused) as err:
        message = err.message if isinstance(err, DeployRefused) else str(err)
        return _refused(request, rid, "rollback", message)
    return RedirectResponse(f"/rollouts/{r.id}", status_code=303)


ROUTES = routes_under(
    "/rollouts",
    {
        "": {"GET": list_page, "POST": deploy},
        "/new": {"GET": new_page},
        "/{id:int}": {"GET": rollout_page},
        "/{id:int}/abort": {"GET": confirm_page, "POST": abort},
        "/{id:int}/rollback": {"GET": confirm_page, "POST": rollback},
    },
)
