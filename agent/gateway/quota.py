"""Intake limits: per-device bytes and files per UTC day, and a free-space floor.

`IntakeQuota.admit` decides before anything is written; `record` counts what was stored.
Refusals are counted per device and day and shown in `edge-gateway devices`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.gateway.config import IntakeConfig
from agent.gateway.db import Store
from agent.gateway.intake import IntakeRefusal, IntakeRejected


@dataclass(frozen=True)
class IntakeUsage:
    """One device's intake on one UTC day."""

    day: str
    bytes: int
    files: int
    refused_quota: int
    refused_disk: int


class IntakeQuota:
    """Per-device daily quotas and the disk floor, counted in the state file."""

    def __init__(self, store: Store, cfg: IntakeConfig, data_dir: Path) -> None:
        self.store, self.cfg, self.data_dir = store, cfg, data_dir

    def usage(self, device: str, day: str) -> IntakeUsage:
        r = self.store.read_one(
            "SELECT bytes, files, refused_quota, refused_disk FROM intake_usage "
            "WHERE device=? AND day=?",
            (device, day),
        )
        if r is None:
            return IntakeUsage(day, 0, 0, 0, 0)
        return IntakeUsage(day, r[0], r[1], r[2], r[3])

    def admit(self, device: str, day: str, nbytes: int, nfiles: int) -> None:
        """Raise IntakeRejected (counted) if storing `nbytes` in `nfiles` breaks a limit."""
        used = self.usage(device, day)
        cfg = self.cfg
        if used.bytes + nbytes > cfg.quota_bytes_per_day:
            self._refuse(
                device,
                day,
                "refused_quota",
                IntakeRefusal.QUOTA_EXCEEDED,
                f"{device} stored {used.bytes} bytes today; {nbytes} more would pass "
                f"the daily quota of {cfg.quota_bytes_per_day}",
            )
        if used.files + nfiles > cfg.quota_files_per_day:
            self._refuse(
                device,
                day,
                "refused_quota",
                IntakeRefusal.QUOTA_EXCEEDED,
                f"{device} stored {used.files} files today; {nfiles} more would pass "
                f"the daily quota of {cfg.quota_files_per_day}",
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.data_dir).free
        if free - nbytes < cfg.min_free_bytes:
            self._refuse(
                device,
                day,
                "refused_disk",
                IntakeRefusal.DISK_FLOOR,
                f"{free} bytes free; storing {nbytes} would go below the floor of "
                f"{cfg.min_free_bytes}",
            )

    def record(self, device: str, day: str, nbytes: int, nfiles: int) -> None:
        """Count an upload that was stored."""
        self._add(device, day, "bytes", nbytes)
        self._add(device, day, "files", nfiles)

    def _refuse(
        self, device: str, day: str, column: str, reason: IntakeRefusal, message: str
    ) -> None:
        self._add(device, day, column, 1)
        raise IntakeRejected(reason, message)

    def _add(self, device: str, day: str, column: str, amount: int) -> None:
        with self.store.tx() as db:
            db.execute(
                f"INSERT INTO intake_usage(device, day, {column}) VALUES (?, ?, ?) "
                f"ON CONFLICT(device, day) DO UPDATE SET {column}={column}+excluded.{column}",
                (device, day, amount),
            )
