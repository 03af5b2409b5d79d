"""Who may see the web page: the Host check of the admin API, then a session cookie; and for
every state-changing request the session's CSRF token.

The admin token (`http.admin_tokens_sha256`) is what guards the page, from any address of the
site LAN (`http.admin_loopback_only` restricts the JSON API only). Without a session every page
redirects to /login; a POST without the session's CSRF token is refused (403) before anything
happens. The session cookie is HttpOnly and SameSite=Strict (and Secure behind https).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from agent.gateway.api.auth import check_host
from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.web.session import CSRF_FIELD, SESSION_COOKIE, Session, Sessions, csrf_ok

Endpoint = Callable[[Request], Awaitable[Response]]


def sessions(request: Request) -> Sessions:
    """The app's session table (made with the web routes)."""
    table: Sessions = request.app.state.web_sessions
    return table


def session_of(request: Request) -> Session | None:
    return sessions(request).get(request.cookies.get(SESSION_COOKIE), ctx(request).clock())


def to_login(request: Request) -> Response:
    """303 to the login page, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def check_origin(request: Request) -> None:
    """403 for a POST whose Origin header names another site (or is opaque, "null"): a page
    elsewhere cannot even submit the login form. A request without Origin passes (CLI tools)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise HttpProblem(403, f"cross-site request from {origin!r} refused")


async def check_csrf(request: Request, session: Session) -> None:
    """403 unless the form (or the X-CSRF-Token header) carries the session's CSRF token."""
    value = request.headers.get("x-csrf-token")
    if value is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
    if not csrf_ok(session, value):
        raise HttpProblem(403, "missing or wrong CSRF token; reload the page and try again")


def web(endpoint: Endpoint) -> Endpoint:
    """Wrap a page: Host, then session (else to /login), then CSRF for a POST."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        check_host(request)
        session = session_of(request)
        if session is None:
            if request.method != "GET":
                raise HttpProblem(403, "no session; log in again")
            return to_login(request)
        if request.method == "POST":
            check_origin(request)
            await check_csrf(request, session)
        request.state.session = session
        return await endpoint(request)

    return guarded


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=int(sessions(request).ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
