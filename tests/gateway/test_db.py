"""The SQLite state: migrations, persistence across reopen, sequences, rollouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.gateway.db import MIGRATIONS, Store
from agent.gateway.rollout import CommandKind, DeployRequest, Outcome, Report, Rollout


def test_fresh_file_gets_every_migration(tmp_path: Path) -> None:
    """Opening a new file applies all migrations and records the schema version."""
    with Store(tmp_path / "s.db") as store:
        assert store.schema_version == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer gateway is refused rather than misread."""
    with Store(tmp_path / "s.db") as store:
        store._db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this gateway"):
        Store(tmp_path / "s.db")


def test_sequences_are_per_device_monotonic_and_survive_reopen(tmp_path: Path) -> None:
    """Command sequences grow by one per device and continue after a reopen."""
    with Store(tmp_path / "s.db") as store:
        assert [store.next_seq("a"), store.next_seq("a"), store.next_seq("b")] == [1, 2, 1]
    with Store(tmp_path / "s.db") as store:
        assert store.next_seq("a") == 3


def test_rollout_round_trips_through_the_file(tmp_path: Path) -> None:
    """A rollout saved mid-way loads back with the same states, deadlines and commands."""
    with Store(tmp_path / "s.db") as store:
        with store.tx() as db:
            rid = store.new_rollout_id(db, "u1", "m", 2, 100.0)
            req = DeployRequest(
                "m", 2, ["a", "b", "c"], canary=1, wave_size=2, max_failures=1, timeout_s=30
            )
            r = Rollout.plan(id=rid, uid="u1", req=req, now=100.0)
            r.slots["a"].previous = ("m", 1)
            r.start(100.0)
            store.save_rollout(r, db, {"a": {"command_id": r.slots["a"].command_id}})
        with store.tx() as db:
            r.on_report(
                Report("a", r.command_id("a", CommandKind.DEPLOY), Outcome.SUCCEEDED), 101.0
            )
            store.save_rollout(r, db)
    with Store(tmp_path / "s.db") as store:
        back = store.load_rollout(rid)
        assert back is not None
        assert back.state == r.state and back.current_wave == 1
        assert {d: s.state for d, s in back.slots.items()} == {
            d: s.state for d, s in r.slots.items()
        }
        assert back.slots["b"].deadline == 131.0 and back.slots["a"].previous == ("m", 1)
        assert store.stored_command(rid, "a") == {"command_id": r.slots["a"].command_id}
        assert store.rollout_ids(active_only=True) == [rid]
