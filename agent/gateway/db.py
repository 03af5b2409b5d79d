"""The gateway's state in SQLite (WAL): schema, models, rollouts, command sequences.

One `Store` per process; its methods are serialised by a lock so the MQTT thread and the HTTP
server can share it. Every change is one transaction, so a `kill -9` leaves either the old or
the new state. Schema changes are numbered migrations applied in order at open
(`PRAGMA user_version` records the last one applied). The device tables (seen state, enrolment,
intake usage) are read and written by `agent.gateway.devices` and `agent.gateway.quota`; the
review of intake items by `agent.gateway.review_store`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent.gateway.rollout import CommandKind, DeviceSlot, DeviceState, Rollout, RolloutState

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE models (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        format TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        length INTEGER NOT NULL,
        manifest TEXT NOT NULL,          -- manifest JSON
        signed TEXT NOT NULL,            -- signed manifest envelope JSON
        created REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        online INTEGER NOT NULL DEFAULT 0,
        last_seen REAL NOT NULL,
        status TEXT,                     -- last status payload JSON
        ota TEXT,                        -- last ota/state payload JSON
        health TEXT,                     -- last health payload JSON
        malformed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE command_seq (device TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT NOT NULL UNIQUE,
        model_name TEXT NOT NULL,
        model_version INTEGER NOT NULL,
        state TEXT NOT NULL,
        current_wave INTEGER NOT NULL,
        wave_size INTEGER NOT NULL,
        max_failures INTEGER NOT NULL,
        timeout_s REAL NOT NULL,
        reason TEXT,
        created REAL NOT NULL,
        finished REAL
    );
    CREATE TABLE rollout_devices (
        rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
        device TEXT NOT NULL,
        position INTEGER NOT NULL,
        wave INTEGER NOT NULL,
        state TEXT NOT NULL,
        command_id TEXT,
        revert_command_id TEXT,
        sent_at REAL,
        deadline REAL,
        finished_at REAL,
        ota_state TEXT,
        progress REAL,
        prev_name TEXT,
        prev_version INTEGER,
        reason TEXT,
        command TEXT,                    -- last signed command JSON sent, for re-sending
        PRIMARY KEY (rollout_id, device)
    );
    CREATE INDEX rollout_devices_device ON rollout_devices(device);
    """,
    # 2: enrolled devices (devices that already reported a status are enrolled on upgrade, with
    # no token: their intake tokens stay in the config) and per-device, per-day intake usage
    """
    CREATE TABLE enrolled (
        id TEXT PRIMARY KEY,
        token_sha256 TEXT UNIQUE,        -- sha256 of the device's bearer token, or NULL
        enrolled REAL NOT NULL
    );
    INSERT INTO enrolled(id, token_sha256, enrolled)
        SELECT id, NULL, last_seen FROM devices WHERE status IS NOT NULL;
    DELETE FROM devices WHERE id NOT IN (SELECT id FROM enrolled);
    CREATE TABLE intake_usage (
        device TEXT NOT NULL,
        day TEXT NOT NULL,               -- YYYY-MM-DD (UTC)
        bytes INTEGER NOT NULL DEFAULT 0,
        files INTEGER NOT NULL DEFAULT 0,
        refused_quota INTEGER NOT NULL DEFAULT 0,
        refused_disk INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device, day)
    );
    """,
    # 3: review of intake items (agent.gateway.review_store): one row per uploaded hard frame
    """
    CREATE TABLE intake_items (
        id TEXT PRIMARY KEY,             -- agent.gateway.review.item_id of the four parts below
        device TEXT NOT NULL,
        camera TEXT NOT NULL,
        day TEXT NOT NULL,               -- YYYY-MM-DD (UTC) folder of the upload
        stem TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending|accepted|rejected|relabelled
        captured REAL NOT NULL,          -- capture time (sidecar `ts`, else upload time)
        received REAL NOT NULL,
        class_names TEXT NOT NULL DEFAULT '[]',  -- JSON list: the item's class map
        classes TEXT NOT NULL DEFAULT '',        -- class names present in its labels, one per line
        boxes INTEGER NOT NULL DEFAULT 0,
        edited INTEGER NOT NULL DEFAULT 0,       -- labels changed by a relabel
        updated REAL,
        updated_by TEXT,
        reason TEXT,
        UNIQUE (device, camera, day, stem)
    );
    CREATE INDEX intake_items_status ON intake_items(status);
    CREATE INDEX intake_items_place ON intake_items(device, camera, day);
    """,
    # 4: rollback rollouts (`edge-gateway rollback ID`) and the device's words for a failure
    """
    ALTER TABLE rollouts ADD COLUMN action TEXT NOT NULL DEFAULT 'deploy';
    ALTER TABLE rollouts ADD COLUMN undoes INTEGER;
    ALTER TABLE rollout_devices ADD COLUMN detail TEXT;
    """,
]


def record_of(cls: type[R], r: sqlite3.Row, **given: Any) -> R:
    """The dataclass `cls` from a row: `given` for the fields stored another way (JSON, enums,
    renamed columns), every other field from the column of its name (a field that is no column
    keeps its default, a column that is no field is ignored)."""
    columns = set(r.keys())
    stored = {
        f.name: r[f.name]
        for f in fields(cls)
        if f.init and f.name in columns and f.name not in given
    }
    return cls(**stored, **given)


@dataclass(frozen=True)
class ModelRow:
    """A registered model version."""

    name: str
    version: int
    format: str
    sha256: str
    length: int
    manifest: dict[str, Any]
    signed: dict[str, Any]
    created: float


class Store:
    """The SQLite state file. Thread-safe; use as a context manager or call `close()`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process kills
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error), under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._lock:
            current = self._db.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {current}, newer than this gateway "
                    f"({len(MIGRATIONS)}); upgrade edge-gateway"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                with self.tx() as db:
                    for stmt in MIGRATIONS[version - 1].split(";"):
                        if stmt.strip():
                            db.execute(stmt)
                    db.execute(f"PRAGMA user_version={version}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Every row of one read-only query, under the lock."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def read_one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """The first row of one read-only query (or None), under the lock."""
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    # -- models ---------------------------------------------------------------------------------

    def latest_version(self, name: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(version) FROM models WHERE name=?", (name,)
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def add_model(self, row: ModelRow) -> None:
        """Insert a model version; raises ValueError unless it is greater than the latest."""
        with self.tx() as db:
            latest = db.execute(
                "SELECT MAX(version) FROM models WHERE name=?", (row.name,)
            ).fetchone()[0]
            if latest is not None and row.version <= latest:
                raise ValueError(
                    f"model {row.name}: version {row.version} is not greater than the latest "
                    f"({latest})"
                )
            db.execute(
                "INSERT INTO models VALUES (?,?,?,?,?,?,?,?)",
                (
                    row.name,
                    row.version,
                    row.format,
                    row.sha256,
                    row.length,
                    json.dumps(row.manifest),
                    json.dumps(row.signed),
                    row.created,
                ),
            )

    def models(self) -> list[ModelRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM models ORDER BY name, version").fetchall()
        return [self._model(r) for r in rows]

    def model(self, name: str, version: int) -> ModelRow | None:
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM models WHERE name=? AND version=?", (name, version)
            ).fetchone()
        return None if r is None else self._model(r)

    @staticmethod
    def _model(r: sqlite3.Row) -> ModelRow:
        return record_of(
            ModelRow, r, manifest=json.loads(r["manifest"]), signed=json.loads(r["signed"])
        )

    # -- command sequence -----------------------------------------------------------------------

    def next_seq(self, device: str, db: sqlite3.Connection | None = None, at_least: int = 1) -> int:
        """Allocate the next command sequence number of `device` (1, 2, ...; never reused).

        `at_least`: the device's reported last accepted sequence + 1. The result is
        max(the stored next, at_least), so a state file restored from an old backup never
        hands out numbers the device already used.
        """
        if db is None:
            with self.tx() as db2:
                return self.next_seq(device, db2, at_least)
        db.execute(
            "INSERT INTO command_seq(device, seq) VALUES (?, max(1, ?)) "
            "ON CONFLICT(device) DO UPDATE SET seq=max(seq+1, ?)",
            (device, at_least, at_least),
        )
        return int(
            db.execute("SELECT seq FROM command_seq WHERE device=?", (device,)).fetchone()[0]
        )

    # -- rollouts -------------------------------------------------------------------------------

    def new_rollout_id(
        self, db: sqlite3.Connection, uid: str, model: str, version: int, now: float
    ) -> int:
        """Reserve a rollout id inside an open transaction (the row is completed by save)."""
        cur = db.execute(
            "INSERT INTO rollouts(uid, model_name, model_version, state, current_wave, wave_size, "
            "max_failures, timeout_s, created) VALUES (?,?,?,?,0,1,1,1,?)",
            (uid, model, version, RolloutState.CANARY.value, now),
        )
        return int(cur.lastrowid or 0)

    def save_rollout(
        self,
        r: Rollout,
        db: sqlite3.Connection,
        commands: dict[str, dict[str, Any]] | None = None,
        positions: dict[str, int] | None = None,
    ) -> None:
        """Write the rollout header and its changed devices (`r.dirty`) inside a transaction."""
        db.execute(
            "UPDATE rollouts SET state=?, current_wave=?, wave_size=?, max_failures=?, "
            "timeout_s=?, reason=?, finished=?, action=?, undoes=? WHERE id=?",
            (
                r.state.value,
                r.current_wave,
                r.wave_size,
                r.max_failures,
                r.timeout_s,
                r.reason,
                r.finished_at,
                r.action.value,
                r.undoes,
                r.id,
            ),
        )
        order = positions or {d: i for i, d in enumerate(r.slots)}
        for dev in sorted(r.dirty):
            s = r.slots[dev]
            cmd = None if commands is None or dev not in commands else json.dumps(commands[dev])
            db.execute(
                "INSERT INTO rollout_devices(rollout_id, device, position, wave, state, "
                "command_id, revert_command_id, sent_at, deadline, finished_at, ota_state, "
                "progress, prev_name, prev_version, reason, command, detail) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(rollout_id, device) DO UPDATE SET state=excluded.state, "
                "command_id=excluded.command_id, revert_command_id=excluded.revert_command_id, "
                "sent_at=excluded.sent_at, deadline=excluded.deadline, "
                "finished_at=excluded.finished_at, ota_state=excluded.ota_state, "
                "progress=excluded.progress, reason=excluded.reason, detail=excluded.detail, "
                "command=COALESCE(excluded.command, rollout_devices.command)",
                (
                    r.id,
                    dev,
                    order[dev],
                    s.wave,
                    s.state.value,
                    s.command_id,
                    s.revert_command_id,
                    s.sent_at,
                    s.deadline,
                    s.finished_at,
                    s.ota_state,
                    s.progress,
                    None if s.previous is None else s.previous[0],
                    None if s.previous is None else s.previous[1],
                    s.reason,
                    cmd,
                    s.detail,
                ),
            )
        r.dirty.clear()

    def load_rollout(self, rollout_id: int) -> Rollout | None:
        with self._lock:
            h = self._db.execute("SELECT * FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
            if h is None:
                return None
            rows = self._db.execute(
                "SELECT * FROM rollout_devices WHERE rollout_id=? ORDER BY position", (rollout_id,)
            ).fetchall()
        slots = {
            d["device"]: record_of(
                DeviceSlot,
                d,
                state=DeviceState(d["state"]),
                previous=None if d["prev_name"] is None else (d["prev_name"], d["prev_version"]),
            )
            for d in rows
        }
        return record_of(
            Rollout,
            h,
            slots=slots,
            state=RolloutState(h["state"]),
            created_at=h["created"],
            finished_at=h["finished"],
            action=CommandKind(h["action"]),
        )

    def rollout_ids(self, active_only: bool = False) -> list[int]:
        q = "SELECT id FROM rollouts"
        if active_only:
            q += " WHERE state NOT IN ('succeeded', 'aborted')"
        with self._lock:
            return [int(r[0]) for r in self._db.execute(q + " ORDER BY id").fetchall()]

    def stored_command(self, rollout_id: int, device: str) -> dict[str, Any] | None:
        """The last signed command sent to `device` in this rollout."""
        with self._lock:
            r = self._db.execute(
                "SELECT command FROM rollout_devices WHERE rollout_id=? AND device=?",
                (rollout_id, device),
            ).fetchone()
        return None if r is None or r[0] is None else json.loads(r[0])

    def command_sent(self, device: str, command_id: str) -> bool:
        """True when a rollout ever sent `command_id` (deploy or rollback) to `device`."""
        row = self.read_one(
            "SELECT 1 FROM rollout_devices "
            "WHERE device=? AND (command_id=? OR revert_command_id=?)",
            (device, command_id, command_id),
        )
        return row is not None


def has_model(store: Store, name: str, version: int) -> bool:
    """True when `name`@`version` is in the registry."""
    return (
        store.read_one("SELECT 1 FROM models WHERE name=? AND version=?", (name, version))
        is not None
    )


def committed_floors(store: Store, device: str) -> dict[str, int]:
    """Per model name, the highest version `device` committed in a deploy rollout: the
    device's floor (it refuses a deploy that is not above it, even after going back)."""
    rows = store.read(
        "SELECT r.model_name, MAX(r.model_version) FROM rollout_devices d "
        "JOIN rollouts r ON r.id = d.rollout_id WHERE d.device=? AND r.action='deploy' "
        "AND d.state IN ('committed', 'reverting', 'reverted', 'revert_failed') "
        "GROUP BY r.model_name",
        (device,),
    )
    return {str(r[0]): int(r[1]) for r in rows}
