"""Credentials of the HTTP side.

Admin routes (everything but artifacts and intake) need, in this order: a Host header naming
this gateway (`http.allowed_hosts`; 400 without one, 421 for another name), the loopback
address when `http.admin_loopback_only` is set (403), an admin bearer token whose SHA-256 is in
`http.admin_tokens_sha256` (401), and for POST an `application/json` body (415). A browser on
another site can send none of these together, so cross-origin form posts and DNS-rebinding
pages get nowhere.

Device routes need the device's own bearer token (its intake token), checked against the
enrolled device list.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.tokens import bearer, token_matches

Endpoint = Callable[[Request], Awaitable[Response]]
LOOPBACK = frozenset({"127.0.0.1", "::1"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def host_name(header: str) -> str:
    """The name part of a Host header: no port, no IPv6 brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    name, sep, port = value.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else value


def check_host(request: Request) -> None:
    """400 without a Host header, 421 when it names a host this gateway is not."""
    header = request.headers.get("host")
    if not header:
        raise HttpProblem(400, "a Host header is required")
    name = host_name(header)
    if name not in ctx(request).cfg.http.host_names():
        raise HttpProblem(
            421, f"this gateway does not answer to host {name!r} (http.allowed_hosts)"
        )


def check_admin_token(request: Request) -> None:
    """401 unless the bearer token hashes to one of `http.admin_tokens_sha256`."""
    digests = ctx(request).cfg.http.admin_tokens_sha256
    if not digests:
        raise HttpProblem(
            401,
            "no admin token is configured (edge-gateway admin-token, then "
            "http.admin_tokens_sha256)",
            CHALLENGE,
        )
    if not token_matches(bearer(request.headers.get("authorization")), digests):
        raise HttpProblem(401, "missing or wrong admin bearer token", CHALLENGE)


def check_json(request: Request) -> None:
    """415 unless the request body is declared `application/json`."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HttpProblem(415, f"expected Content-Type application/json, got {media or 'none'!r}")


def check_admin(request: Request) -> None:
    """Every admin check, in order (see the module docstring)."""
    check_host(request)
    client = request.client.host if request.client else ""
    if ctx(request).cfg.http.admin_loopback_only and client not in LOOPBACK:
        raise HttpProblem(403, "the admin API is accepted from loopback only")
    check_admin_token(request)
    if request.method == "POST":
        check_json(request)


def admin(endpoint: Endpoint) -> Endpoint:
    """Wrap an admin endpoint with `check_admin`."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        check_admin(request)
        return await endpoint(request)

    return guarded


def device_of_request(request: Request) -> str:
    """The enrolled device whose bearer token the request carries, else 401."""
    context = ctx(request)
    token = bearer(request.headers.get("authorization"))
    device = context.fleet.devices.device_of_token(token, context.cfg.intake.tokens_sha256)
    if device is None:
        raise HttpProblem(401, "missing or wrong device bearer token", CHALLENGE)
    return device
