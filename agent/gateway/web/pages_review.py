"""Review: hard frames from intake as a grid of thumbnails with the teacher's boxes drawn;
accept, reject, or change a box's class (keyboard: j/k, a/r, b, digits; buttons without
JavaScript). The same store and rules as `edge-gateway dataset review`
(`agent.gateway.review_store`)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.review import (
    LabelEdit,
    ReviewAction,
    ReviewError,
    ReviewFilter,
    ReviewStatus,
    check_item_ids,
)
from agent.gateway.web.draw import labelled_thumbnail
from agent.gateway.web.guard import web
from agent.gateway.web.render import SECURITY_HEADERS, page
from agent.util.validation import format_validation_error

PAGE_SIZE = 48
FILTER_FIELDS = ("device", "camera", "day", "class", "status")


def review_filter(params: Any) -> tuple[ReviewFilter, dict[str, str]]:
    """The filter of the page's query string (status `pending` unless given; `any`: all)."""
    given = {k: str(params.get(k, "")).strip() for k in FILTER_FIELDS}
    given["status"] = given["status"] or "pending"
    data = {k: v for k, v in given.items() if v and not (k == "status" and v == "any")}
    try:
        return ReviewFilter.model_validate(data), given
    except ValidationError as err:
        raise HttpProblem(400, format_validation_error(err)) from None


@web
async def review_page(request: Request) -> Response:
    """GET /review[?device=&camera=&day=&class=&status=&offset=]."""
    store = ctx(request).review
    flt, given = review_filter(request.query_params)
    raw = request.query_params.get("offset", "0")
    offset = int(raw) if raw.isdigit() else 0
    counts = store.counts(flt)
    cards = []
    for row in store.items(flt, PAGE_SIZE, offset):
        detail = store.detail(row.id)
        cards.append({**row.view(), "boxes_list": detail["boxes_list"]})
    total = counts[flt.status.value] if flt.status is not None else sum(counts.values())
    query = {k: v for k, v in given.items() if v}
    return page(
        request,
        "review.html",
        cards=cards,
        counts=counts,
        total=total,
        given=given,
        statuses=[s.value for s in ReviewStatus],
        offset=offset,
        size=PAGE_SIZE,
        facets=store.facets(),
        back=f"/review?{urlencode({**query, 'offset': offset})}",
        query=urlencode(query),
    )


def item_of(request: Request) -> str:
    try:
        return check_item_ids([request.path_params["id"]])[0]
    except ReviewError as err:
        raise HttpProblem(400, err.message) from None


@web
async def thumbnail(request: Request) -> Response:
    """GET /review/items/<id>/thumb.png: the JPEG with its boxes, drawn off the event loop."""
    store = ctx(request).review
    detail = store.detail(item_of(request))
    row = store.item(detail["id"])
    boxes = [(b["class_id"], b["xywh"]) for b in detail["boxes_list"]]
    png = await asyncio.to_thread(
        labelled_thumbnail, str(store.file(row, ".jpg")), boxes, row.class_names
    )
    return Response(png, media_type="image/png", headers=SECURITY_HEADERS)


@web
async def act(request: Request) -> Response:
    """POST /review/items/<id>/(accept|reject|relabel): one decision; JSON for the page's
    script, else back to the grid."""
    c = ctx(request)
    iid = item_of(request)
    form = await request.form()
    try:
        action = ReviewAction(request.path_params["action"])
    except ValueError:
        raise HttpProblem(404, "no such review action (accept, reject, relabel)") from None
    edit = None
    if action is ReviewAction.RELABEL:
        box, cls = str(form.get("box", "")), str(form.get("class", ""))
        if not box.isdigit() or not cls:
            raise HttpProblem(400, "relabel needs a box number and a class")
        edit = LabelEdit(boxes={int(box): cls})
    result = c.review.act(action, ReviewFilter(ids=[iid]), "web", None, c.clock(), edit)
    if "application/json" in request.headers.get("accept", ""):
        detail = c.review.detail(iid)
        return JSONResponse(
            {
                "id": iid,
                "status": detail["status"],
                "changed": bool(result.changed),
                "boxes": detail["boxes_list"],
                "class_names": detail["class_names"],
            }
        )
    back = str(form.get("back") or "/review")
    return RedirectResponse(back if back.startswith("/review") else "/review", status_code=303)


ROUTES = [
    Route("/review", review_page, methods=["GET"]),
    Route("/review/items/{id}/thumb.png", thumbnail, methods=["GET"]),
    Route("/review/items/{id}/{action:str}", act, methods=["POST"]),
]
