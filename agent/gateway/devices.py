"""The fleet's device list: which ids are enrolled (and their token hashes) and what each
enrolled device last reported (status, health, OTA state), in the state file.

Only enrolled devices exist for the gateway: messages from other ids are counted by the caller
and never written here, so an anonymous client cannot make a device appear in the fleet.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

from agent.gateway.db import Store
from agent.gateway.tokens import token_matches, token_sha256
from agent.util.errors import Refused


class EnrolmentError(Refused[str]):
    """An enrolment change that cannot be made; `reason` says which rule refused it
    ("already_enrolled", "not_enrolled" or "token_in_use")."""


@dataclass(frozen=True)
class DeviceRow:
    """An enrolled device and what the gateway last heard from it (None: nothing yet)."""

    id: str
    enrolled: float
    online: bool
    last_seen: float | None
    status: dict[str, Any] | None
    ota: dict[str, Any] | None
    health: dict[str, Any] | None
    malformed: int


_SELECT = (
    "SELECT e.id AS id, e.enrolled AS enrolled, d.online AS online, d.last_seen AS last_seen, "
    "d.status AS status, d.ota AS ota, d.health AS health, d.malformed AS malformed "
    "FROM enrolled e LEFT JOIN devices d ON d.id = e.id"
)


def _js(value: str | None) -> dict[str, Any] | None:
    return None if value is None else json.loads(value)


def _row(r: sqlite3.Row) -> DeviceRow:
    return DeviceRow(
        id=r["id"],
        enrolled=r["enrolled"],
        online=bool(r["online"]),
        last_seen=r["last_seen"],
        status=_js(r["status"]),
        ota=_js(r["ota"]),
        health=_js(r["health"]),
        malformed=r["malformed"] or 0,
    )


class DeviceBook:
    """Enrolment and last-known state of devices. Thread-safe; the enrolled ids are cached."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._ids = frozenset(str(r["id"]) for r in store.read("SELECT id FROM enrolled"))

    # -- enrolment ------------------------------------------------------------------------------

    def is_enrolled(self, device: str) -> bool:
        """True when `device` is on the list (cheap: an in-memory set)."""
        return device in self._ids

    def enrolled_ids(self) -> frozenset[str]:
        return self._ids

    def enroll(self, device: str, digest: str | None, now: float) -> None:
        """Add `device` with the SHA-256 of its bearer token (None: config token only)."""
        with self._lock, self.store.tx() as db:
            if db.execute("SELECT 1 FROM enrolled WHERE id=?", (device,)).fetchone():
                raise EnrolmentError("already_enrolled", f"device {device} is already enrolled")
            clash = db.execute("SELECT id FROM enrolled WHERE token_sha256=?", (digest,)).fetchone()
            if digest is not None and clash is not None:
                raise EnrolmentError("token_in_use", f"that token is already {clash[0]}'s")
            db.execute("INSERT INTO enrolled VALUES (?, ?, ?)", (device, digest, now))
            self._ids = self._ids | {device}

    def remove(self, device: str) -> None:
        """Take `device` off the list and forget what it reported."""
        with self._lock, self.store.tx() as db:
            if db.execute("DELETE FROM enrolled WHERE id=?", (device,)).rowcount == 0:
                raise EnrolmentError("not_enrolled", f"device {device} is not enrolled")
            db.execute("DELETE FROM devices WHERE id=?", (device,))
            self._ids = self._ids - {device}

    def token_ok(self, device: str, token: str | None, config_digest: str | None) -> bool:
        """`token` is enrolled `device`'s own (its stored hash or the config's)."""
        if device not in self._ids or not token:
            return False
        r = self.store.read_one("SELECT token_sha256 FROM enrolled WHERE id=?", (device,))
        stored = None if r is None else r[0]
        return token_matches(token, (stored, config_digest))

    def device_of_token(self, token: str | None, config: dict[str, str]) -> str | None:
        """The enrolled device whose bearer token this is, else None."""
        if not token:
            return None
        r = self.store.read_one(
            "SELECT id FROM enrolled WHERE token_sha256=?", (token_sha256(token),)
        )
        if r is not None:
            return str(r[0])
        for device, digest in config.items():
            if device in self._ids and token_matches(token, (digest,)):
                return device
        return None

    # -- last-known state -----------------------------------------------------------------------

    def record(
        self,
        device: str,
        now: float,
        *,
        online: bool | None = None,
        status: dict[str, Any] | None = None,
        ota: dict[str, Any] | None = None,
        health: dict[str, Any] | None = None,
    ) -> None:
        """Record a valid message from enrolled `device` (only the given parts change)."""
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO devices(id, last_seen) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET last_seen=excluded.last_seen",
                (device, now),
            )
            if online is not None:
                db.execute("UPDATE devices SET online=? WHERE id=?", (int(online), device))
            for col, value in (("status", status), ("ota", ota), ("health", health)):
                if value is not None:
                    db.execute(
                        f"UPDATE devices SET {col}=? WHERE id=?", (json.dumps(value), device)
                    )

    def count_malformed(self, device: str, now: float) -> None:
        """Count a malformed message from enrolled `device`."""
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO devices(id, last_seen, malformed) VALUES (?, ?, 1) "
                "ON CONFLICT(id) DO UPDATE SET malformed=malformed+1",
                (device, now),
            )

    def all(self) -> list[DeviceRow]:
        """Every enrolled device, by id."""
        return [_row(r) for r in self.store.read(_SELECT + " ORDER BY e.id")]

    def get(self, device: str) -> DeviceRow | None:
        """One enrolled device, or None when it is not enrolled."""
        r = self.store.read_one(_SELECT + " WHERE e.id=?", (device,))
        return None if r is None else _row(r)
