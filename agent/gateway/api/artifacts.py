"""Artifacts: model files by SHA-256, with HTTP Range. A device route: the caller must present
an enrolled device's bearer token (model files are not public)."""

from __future__ import annotations

import re

import structlog
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from agent.gateway.api.auth import device_of_request
from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem

log = structlog.get_logger(__name__)

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


async def get_artifact(request: Request) -> Response:
    """GET/HEAD /v1/artifacts/<sha256>."""
    device = device_of_request(request)
    sha = request.path_params["sha256"]
    if not _SHA_RE.fullmatch(sha):
        raise HttpProblem(400, "artifact address must be 64 lower-case hex digits")
    path = ctx(request).cfg.artifacts_dir / sha
    if not path.is_file():
        raise HttpProblem(404, "no such artifact")
    log.debug("artifact served", device=device, sha256=sha, range=request.headers.get("range"))
    return FileResponse(path, media_type="application/octet-stream")


ROUTES = [Route("/v1/artifacts/{sha256}", get_artifact, methods=["GET", "HEAD"])]
