"""Browser sessions of the web page (pure: no I/O, the clock is an argument).

A session is made by logging in with an admin token; its id travels in an HttpOnly,
SameSite=Strict cookie and its CSRF token in every form. Sessions live in memory, expire after
`ttl_s`, and at most `limit` are kept (the oldest go first).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass

SESSION_COOKIE = "edge_session"
SESSION_TTL_S = 12 * 3600.0
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    """One logged-in browser."""

    id: str
    csrf: str
    expires: float


class Sessions:
    """The live sessions; thread-safe."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, limit: int = 64) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, now: float) -> Session:
        """A new session (the oldest are dropped beyond `limit`)."""
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.ttl_s)
        with self._lock:
            self._prune(now)
            while len(self._by_id) >= self.limit:
                oldest = min(self._by_id.values(), key=lambda x: x.expires)
                del self._by_id[oldest.id]
            self._by_id[s.id] = s
        return s

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session of a cookie value, else None."""
        if not session_id:
            return None
        with self._lock:
            s = self._by_id.get(session_id)
            if s is not None and s.expires <= now:
                del self._by_id[s.id]
                return None
            return s

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)

    def _prune(self, now: float) -> None:
        for sid in [k for k, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[sid]


def csrf_ok(session: Session, value: object) -> bool:
    """True when `value` is this session's CSRF token (constant-time compare)."""
    return isinstance(value, str) and hmac.compare_digest(value, session.csrf)
