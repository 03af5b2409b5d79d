"""Log in (the admin token -> a session cookie) and log out."""

from __future__ import annotations

from urllib.parse import urlsplit

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from agent.gateway.api.auth import check_host
from agent.gateway.api.context import ctx
from agent.gateway.tokens import token_matches
from agent.gateway.web.guard import check_origin, sessions, set_session_cookie, web
from agent.gateway.web.render import page
from agent.gateway.web.session import SESSION_COOKIE

log = structlog.get_logger(__name__)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a local path only (no scheme, no host), else /fleet."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/fleet"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/fleet"


async def login_form(request: Request) -> Response:
    """GET /login."""
    check_host(request)
    return page(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    """POST /login: a matching admin token starts a session; anything else shows the form again.

    No CSRF token exists before a session: the Host and Origin checks guard it (a page
    elsewhere cannot log a browser in to the attacker's session).
    """
    check_host(request)
    check_origin(request)
    form = await request.form()
    token = form.get("token")
    target = safe_next(str(form.get("next") or ""))
    digests = ctx(request).cfg.http.admin_tokens_sha256
    if not isinstance(token, str) or not token_matches(token.strip(), digests):
        client = request.client.host if request.client else "?"
        log.warning("web login refused", client=client)
        message = "wrong admin token" if digests else "no admin token is configured"
        return page(request, "login.html", status=401, error=message, next=target)
    session = sessions(request).create(ctx(request).clock())
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, session)
    return response


@web
async def logout(request: Request) -> Response:
    """POST /logout: end this session."""
    sessions(request).drop(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
