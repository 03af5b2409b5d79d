"""The one place where refusals become HTTP responses.

Domain code raises exceptions with a reason (`DeployRefused`, `IntakeRejected`,
`EnrolmentError`, `ReviewError`); HTTP-only checks (credentials, Host, content type, request
syntax) raise `HttpProblem`. Every error body is `{"error": message}` (plus `reason` for
domain refusals).
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent.gateway.config_push import ConfigPushRefused
from agent.gateway.deploy_checks import DeployRefusal, DeployRefused
from agent.gateway.devices import EnrolmentError
from agent.gateway.intake import IntakeRefusal, IntakeRejected
from agent.gateway.review import ReviewError, ReviewRefusal

log = structlog.get_logger(__name__)

DEPLOY_STATUS: dict[DeployRefusal, int] = {
    DeployRefusal.NO_DEVICES: 400,
    DeployRefusal.DUPLICATE_DEVICES: 400,
    DeployRefusal.BAD_PLAN: 400,
    DeployRefusal.UNKNOWN_MODEL: 404,
    DeployRefusal.UNKNOWN_DEVICE: 404,
    DeployRefusal.NEVER_REPORTED: 404,
    DeployRefusal.NO_SUCH_ROLLOUT: 404,
    DeployRefusal.OFFLINE: 409,
    DeployRefusal.BUSY: 409,
    DeployRefusal.MODEL_UNREPORTED: 409,
    DeployRefusal.PREVIOUS_UNREGISTERED: 409,
    DeployRefusal.NOT_RUNNING: 409,
    DeployRefusal.NO_ROLLBACK_TARGET: 409,
    DeployRefusal.BELOW_FLOOR: 409,
    DeployRefusal.NOTHING_TO_ROLL_BACK: 409,
}

INTAKE_STATUS: dict[IntakeRefusal, int] = {
    IntakeRefusal.BAD_ID: 400,
    IntakeRefusal.UNAUTHORIZED: 401,
    IntakeRefusal.NOT_MULTIPART: 415,
    IntakeRefusal.TOO_LARGE: 413,
    IntakeRefusal.BAD_BODY: 400,
    IntakeRefusal.UNSAFE_NAME: 400,
    IntakeRefusal.NOT_JPEG: 415,
    IntakeRefusal.BAD_LABELS: 400,
    IntakeRefusal.BAD_META: 400,
    IntakeRefusal.DUPLICATE: 409,
    IntakeRefusal.QUOTA_EXCEEDED: 429,
    IntakeRefusal.DISK_FLOOR: 507,
}

REVIEW_STATUS: dict[ReviewRefusal, int] = {
    ReviewRefusal.BAD_REQUEST: 400,
    ReviewRefusal.NEEDS_ALL: 400,
    ReviewRefusal.NOT_FOUND: 404,
    ReviewRefusal.MISSING_FILES: 410,
}

ENROLMENT_STATUS: dict[str, int] = {
    "already_enrolled": 409,
    "token_in_use": 409,
    "not_enrolled": 404,
}


class HttpProblem(Exception):
    """A request refused by the HTTP layer itself (credentials, Host, content type, syntax)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers
        super().__init__(message)


def error(status: int, message: str, reason: str | None = None) -> JSONResponse:
    """A JSON error response."""
    body: dict[str, str] = {"error": message}
    if reason is not None:
        body["reason"] = reason
    return JSONResponse(body, status_code=status)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpProblem)
    response = error(exc.status, exc.message)
    response.headers.update(exc.headers or {})
    return response


async def _deploy(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DeployRefused)
    return error(DEPLOY_STATUS[exc.reason], exc.message, exc.reason.value)


async def _intake(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IntakeRejected)
    log.warning(
        "intake refused",
        reason=exc.reason.value,
        error=exc.message,
        device=request.path_params.get("device"),
    )
    return error(INTAKE_STATUS[exc.reason], exc.message, exc.reason.value)


async def _enrolment(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EnrolmentError)
    return error(ENROLMENT_STATUS[exc.reason], exc.message, exc.reason)


async def _config_push(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConfigPushRefused)
    return error(400, str(exc), "config_push_refused")


async def _review(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ReviewError)
    return error(REVIEW_STATUS[exc.reason], exc.message, exc.reason.value)


EXCEPTION_HANDLERS = {
    HttpProblem: _problem,
    ConfigPushRefused: _config_push,
    DeployRefused: _deploy,
    IntakeRejected: _intake,
    EnrolmentError: _enrolment,
    ReviewError: _review,
}
