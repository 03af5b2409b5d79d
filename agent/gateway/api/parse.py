"""Request parsing shared by the handlers: bodies, integer and id path parameters."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from agent.contracts.ids import check_id
from agent.gateway.api.errors import HttpProblem
from agent.util.validation import format_validation_error

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """Validate the JSON body as `model` (400 with every problem); an empty body gives the
    defaults when `optional`."""
    raw = await request.body()
    if optional and not raw.strip():
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise HttpProblem(400, format_validation_error(err)) from None


def int_param(request: Request, name: str, what: str) -> int:
    """An integer path parameter, or 400 naming it."""
    try:
        return int(request.path_params[name])
    except ValueError:
        raise HttpProblem(400, f"{what} must be an integer") from None


def id_param(request: Request, name: str, what: str) -> str:
    """A device or camera id path parameter (`check_id`), or 400 saying what is wrong."""
    value = request.path_params[name]
    try:
        check_id(value, what)
    except ValueError as err:
        raise HttpProblem(400, str(err)) from None
    return value
