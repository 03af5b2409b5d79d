"""Templates: one Jinja2 environment (autoescaped) over this package's `templates/`, the
filters the pages share, and the response headers every page carries."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from agent.util.durations import short_duration

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make Origin "null"
    "Cache-Control": "no-store",
}


SYMBOLS = {
    "online": "● ",
    "stale": "◐ ",
    "offline": "○ ",
    "never": "– ",
    "committed": "✓ ",
    "succeeded": "✓ ",
    "accepted": "✓ ",
    "relabelled": "✓ ",
    "failed": "✗ ",
    "aborted": "✗ ",
    "timed_out": "✗ ",
    "revert_failed": "✗ ",
    "rejected": "✗ ",
    "rolled_back": "↶ ",
    "reverted": "↶ ",
}
"""A symbol before each state's name: shape and word, not colour, carry the state."""


def age(seconds: float | None) -> str:
    """12s, 5m, 3.2h; '-' for None."""
    return "-" if seconds is None else short_duration(seconds)


def clock(ts: float | None) -> str:
    """Epoch seconds as 'YYYY-MM-DD HH:MM:SS UTC'; '-' for None."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=age, clock=clock, number=number)
    env.globals["SYMBOLS"] = SYMBOLS
    return env


def fragment(name: str, **context: Any) -> str:
    """A template rendered to a string (the live parts)."""
    return environment().get_template(name).render(**context)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A whole page: the template with the session's CSRF token and the current section."""
    session = getattr(request.state, "session", None)
    html = fragment(
        name,
        csrf=session.csrf if session is not None else "",
        path=request.url.path,
        now=time.time(),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
