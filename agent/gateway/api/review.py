"""Review of intake items (admin routes); the rules are in `agent.gateway.review`.

GET  /v1/review/items              list: filters as query parameters (device, camera, day,
                                   class, status, ids=a,b), limit (default 100), offset;
                                   answers {"items", "total", "counts": per status}
GET  /v1/review/items/<id>         one item with its labels and the teacher's original
GET  /v1/review/items/<id>/image   the item's JPEG
POST /v1/review/accept|reject|relabel
                                   body {"filter": {...}, "by", "reason", "edit"}; a filter
                                   without any condition needs "all": true
"""

from __future__ import annotations

from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from agent.gateway.api.auth import admin
from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.api.parse import parse_body
from agent.gateway.api.routing import routes_under
from agent.gateway.review import (
    LabelEdit,
    ReviewAction,
    ReviewFilter,
    check_item_ids,
)
from agent.util.models import StrictModel
from agent.util.validation import format_validation_error

FILTER_PARAMS = ("device", "camera", "day", "class", "status")
MAX_LIMIT = 1000


class ReviewRequest(StrictModel):
    """A bulk review action."""

    filter: ReviewFilter = Field(default_factory=ReviewFilter)
    """Items covered."""
    by: str = Field("admin", min_length=1, max_length=100)
    """Who decided."""
    reason: str | None = Field(None, max_length=1000)
    """Why (free text)."""
    edit: LabelEdit | None = None
    """relabel: the label changes."""


def filter_of(request: Request) -> ReviewFilter:
    """The filter given as query parameters, or 400."""
    q = request.query_params
    data: dict[str, object] = {k: q[k] for k in FILTER_PARAMS if q.get(k)}
    if q.get("ids"):
        data["ids"] = [i for i in q["ids"].split(",") if i]
    try:
        return ReviewFilter.model_validate(data)
    except ValidationError as err:
        raise HttpProblem(400, format_validation_error(err)) from None


def _int_query(request: Request, name: str, default: int, top: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > top:
        raise HttpProblem(400, f"{name} must be an integer from 0 to {top}")
    return int(raw)


@admin
async def list_items(request: Request) -> Response:
    """GET /v1/review/items: items matching the filter, with counts per status."""
    review = ctx(request).review
    flt = filter_of(request)
    limit = _int_query(request, "limit", 100, MAX_LIMIT)
    offset = _int_query(request, "offset", 0, 1 << 40)
    counts = review.counts(flt)
    total = counts[flt.status.value] if flt.status is not None else sum(counts.values())
    items = review.items(flt, limit, offset)
    return JSONResponse({"items": [i.view() for i in items], "total": total, "counts": counts})


@admin
async def get_facets(request: Request) -> Response:
    """GET /v1/review/facets: the distinct values each filter can take."""
    return JSONResponse(ctx(request).review.facets())


def _item_id(request: Request) -> str:
    return check_item_ids([request.path_params["id"]])[0]


@admin
async def get_item(request: Request) -> Response:
    """GET /v1/review/items/<id>: the item, its labels and the teacher's original."""
    return JSONResponse(ctx(request).review.detail(_item_id(request)))


@admin
async def get_image(request: Request) -> Response:
    """GET /v1/review/items/<id>/image: the item's JPEG."""
    review = ctx(request).review
    row = review.item(_item_id(request))
    return FileResponse(review.file(row, ".jpg"), media_type="image/jpeg")


@admin
async def post_action(request: Request) -> Response:
    """POST /v1/review/<action>: accept, reject or relabel the items of the filter."""
    try:
        action = ReviewAction(request.path_params["action"])
    except ValueError:
        raise HttpProblem(404, "no such review action (accept, reject, relabel)") from None
    body = await parse_body(request, ReviewRequest)
    c = ctx(request)
    result = c.review.act(action, body.filter, body.by, body.reason, c.clock(), body.edit)
    return JSONResponse(result.view())


ROUTES = routes_under(
    "/v1/review",
    {
        "/items": {"GET": list_items},
        "/facets": {"GET": get_facets},
        "/items/{id}": {"GET": get_item},
        "/items/{id}/image": {"GET": get_image},
        "/{action}": {"POST": post_action},
    },
)
