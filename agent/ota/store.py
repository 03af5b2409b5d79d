"""On-disk model store, active-model pointer, command journal and ledger.

Layout under `root` (`<state_dir>/models`)::

    <name>/<version>/model.onnx|model.engine   installed artifacts (name is a SafeId)
    <name>/<version>/manifest.json             their manifest
    .staging/<command id>.part                 downloads in progress
    pointer.json                               active + previous model, probation record
    job.json                                   the latest command and its state
    ledger.json, ledger.json.bak               sequence, seen command ids, committed versions
    runs.json                                  daemon runs (and crashes) on the committed model
    damage.json                                what the last start found damaged (if anything)

Every JSON file is replaced atomically (`agent.util.files.atomic_write`). `resolve_startup`
(`agent/ota/startup.py`) runs before the first model loads: it cleans leftovers of an
interrupted update, sets aside a damaged pointer or journal (`<file>.corrupt-<unix time>`, the
configured model runs), resolves an interrupted command to exactly one terminal state, counts
starts on probation and crashes on a committed model (a crash loop rolls back), and checks
the active artifact's sha256.
The ledger is never reset by the device: when neither it nor its `.bak` can be read, commands
are refused (`ledger_unreadable`) until an operator clears it (docs/ota.md).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from agent.contracts.ids import check_id
from agent.contracts.manifest import Manifest
from agent.contracts.ota import check_command_id, format_rfc3339
from agent.ota.records import (
    Baseline,
    Job,
    ModelRecord,
    Pointer,
    Probation,
    Runs,
    reverted,
    settle,
)
from agent.ota.validate import Ledger
from agent.util.archive import tree_sha256
from agent.util.files import TMP_MARK, atomic_write, file_sha256, fsync_dir, is_temp_leftover
from agent.util.models import FrozenModel

__all__ = [
    "Baseline",
    "CrashLoopLimit",
    "Job",
    "LedgerUnreadableError",
    "ModelRecord",
    "ModelStore",
    "Pointer",
    "Probation",
    "StoreError",
    "settle",
]

log = structlog.get_logger(__name__)

POINTER = "pointer.json"
JOB = "job.json"
LEDGER = "ledger.json"
LEDGER_BAK = "ledger.json.bak"
RUNS = "runs.json"
DAMAGE = "damage.json"
STAGING = ".staging"
ARTIFACT_SUFFIX = {"onnx": "onnx", "engine": "engine", "tar": "tar"}
"""Installed file name per manifest format: `<name>/<version>/model.<suffix>`."""

M = TypeVar("M", bound=BaseModel)


class StoreError(Exception):
    """The model store is unusable (unreadable files, unsafe names)."""


class LedgerUnreadableError(StoreError):
    """Neither the ledger nor its backup can be read: commands are refused until an operator
    clears it (docs/ota.md, "Damaged state files")."""


class Damage(FrozenModel):
    """What the last start found damaged and set aside (`damage.json`)."""

    notes: list[str]
    """One line per damaged file and what was done."""
    ts: str
    """When the start found it (UTC RFC 3339)."""


@dataclass(frozen=True)
class CrashLoopLimit:
    """Roll a committed model back after `crashes` daemon crashes within `window_s`."""

    crashes: int
    window_s: float


class ModelStore:
    """Models, pointer, journal and ledger under one directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    # -- paths -------------------------------------------------------------------------------
    @property
    def staging_dir(self) -> Path:
        return self.root / STAGING

    def staging_path(self, command_id: str) -> Path:
        """Where the download of `command_id` is written."""
        return self.staging_dir / f"{check_command_id(command_id)}.part"

    def model_dir(self, name: str, version: int) -> Path:
        """Directory of an installed model; the name must be a SafeId (no path tricks)."""
        check_id(name, "model name")
        if not isinstance(version, int) or version < 0:
            raise StoreError(f"invalid model version {version!r}")
        path = self.root / name / str(version)
        if path.resolve().parent.parent != self.root.resolve():
            raise StoreError(f"model path {path} escapes the store {self.root}")
        return path

    # -- JSON records -----------------------------------------------------------------------
    def _read(self, name: str, model: type[M]) -> M | None:
        """The record in `name`, None if absent; StoreError if it is truncated, not UTF-8,
        not JSON or not a valid record."""
        path = self.root / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreError(f"{path} cannot be read: {err}") from None
        try:
            return model.model_validate_json(data)
        except ValidationError as err:
            first = err.errors()[0]["msg"] if err.errors() else str(err)
            raise StoreError(f"{path} is corrupt ({len(data)} bytes): {first}") from None

    def _write(self, name: str, value: BaseModel) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / name, value.model_dump_json(by_alias=True).encode("utf-8"))

    def read_pointer(self) -> Pointer:
        return self._read(POINTER, Pointer) or Pointer()

    def write_pointer(self, pointer: Pointer) -> None:
        self._write(POINTER, pointer)

    def read_job(self) -> Job | None:
        return self._read(JOB, Job)

    def write_job(self, job: Job) -> None:
        self._write(JOB, job)

    def read_damage(self) -> Damage | None:
        """What the last start found damaged (None: nothing)."""
        try:
            return self._read(DAMAGE, Damage)
        except StoreError as err:
            return Damage(notes=[str(err)], ts=format_rfc3339(time.time()))

    def read_ledger(self) -> Ledger:
        """The ledger; its `.bak` when it is damaged (and rewritten from it). Raises
        LedgerUnreadableError when a ledger existed but neither copy can be read."""
        try:
            main = self._read(LEDGER, Ledger)
        except StoreError as err:
            main, problem = None, str(err)
        else:
            if main is not None:
                return main
            problem = None
        try:
            bak = self._read(LEDGER_BAK, Ledger)
        except StoreError as err:
            raise LedgerUnreadableError(f"{problem or 'ledger missing'}; backup: {err}") from None
        if bak is None:
            if problem is None:
                return Ledger()  # a device that never took a command
            raise LedgerUnreadableError(f"{problem}; no backup")
        log.error("ledger damaged; restored from its backup", problem=problem)
        self._write(LEDGER, bak)
        return bak

    def write_ledger(self, ledger: Ledger) -> None:
        """Write the backup first, then the ledger: the backup is never older than the ledger."""
        self._write(LEDGER_BAK, ledger)
        self._write(LEDGER, ledger)

    def mark_clean_stop(self) -> None:
        """The daemon stops in order: this run on the committed model was no crash."""
        try:
            runs = self._read(RUNS, Runs)
        except StoreError:
            runs = None
        if runs is not None and runs.started is not None:
            self._write(RUNS, runs.model_copy(update={"started": None}))

    # -- installing --------------------------------------------------------------------------
    def install(self, staged: Path, manifest: Manifest) -> ModelRecord:
        """Move a verified staged artifact into `<name>/<version>/` (atomic directory rename)."""
        final = self.model_dir(manifest.name, manifest.version)
        tmp = final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        artifact = tmp / f"model.{ARTIFACT_SUFFIX[manifest.format]}"
        os.replace(staged, artifact)
        atomic_write(tmp / "manifest.json", manifest.model_dump_json(by_alias=True).encode())
        with open(artifact, "rb") as f:
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return ModelRecord(
            name=manifest.name,
            version=manifest.version,
            sha256=manifest.sha256,
            path=str(final / artifact.name),
            manifest=manifest,
        )

    def remove(self, record: ModelRecord) -> None:
        """Delete an installed model that is neither active nor previous."""
        p = self.read_pointer()
        keep = {r.path for r in (p.active, p.previous) if r is not None}
        path = Path(record.path)
        if record.path in keep or not self._inside(path):
            return
        shutil.rmtree(path.parent, ignore_errors=True)

    def _inside(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return True

    def prune(self) -> list[Path]:
        """Delete installed versions that are neither active nor previous; return them."""
        p = self.read_pointer()
        keep = {Path(r.path).parent.resolve() for r in (p.active, p.previous) if r is not None}
        removed: list[Path] = []
        if not self.root.exists():
            return removed
        for name_dir in self.root.iterdir():
            if not name_dir.is_dir() or name_dir.name.startswith("."):
                continue
            for vdir in name_dir.iterdir():
                if vdir.resolve() not in keep:
                    shutil.rmtree(vdir, ignore_errors=True) if vdir.is_dir() else vdir.unlink()
                    removed.append(vdir)
            if not any(name_dir.iterdir()):
                name_dir.rmdir()
        return removed

    def clean_leftovers(self) -> list[Path]:
        """Remove staging files and temp files/dirs of interrupted writes; return them."""
        removed: list[Path] = []
        if self.staging_dir.exists():
            for f in self.staging_dir.iterdir():
                f.unlink() if f.is_file() else shutil.rmtree(f, ignore_errors=True)
                removed.append(f)
        if self.root.exists():
            leftovers = [p for p in self.root.rglob(f"*{TMP_MARK}*") if is_temp_leftover(p)]
            for path in sorted(leftovers, reverse=True):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # -- pointer transitions -----------------------------------------------------------------
    def activate(self, new: ModelRecord, old: ModelRecord, command_id: str, max_boots: int) -> None:
        """Point at `new` on probation, keeping `old` for rollback."""
        p = self.read_pointer()
        self.write_pointer(
            Pointer(
                active=new,
                previous=old,
                probation=Probation(command_id=command_id, boots=0, max_boots=max_boots),
                default=p.default,
            )
        )

    def set_active(self, new: ModelRecord) -> None:
        """Point at `new` with nothing kept for rollback and no probation (after a rollback)."""
        p = self.read_pointer()
        self.write_pointer(Pointer(active=new, previous=None, probation=None, default=p.default))

    def end_probation(self) -> None:
        """Commit: clear the probation record and prune versions beyond active + previous.
        From here on, a crash of this run counts against the committed model."""
        p = self.read_pointer()
        self.write_pointer(p.model_copy(update={"probation": None}))
        self.prune()
        try:
            runs = self._read(RUNS, Runs)
        except StoreError:
            runs = None
        if runs is not None and p.active is not None:
            self._write(RUNS, Runs(sha256=p.active.sha256, started=runs.started, crashes=[]))

    def revert(self) -> ModelRecord | None:
        """Roll the pointer back to the previous model; return it (None if nothing kept)."""
        p = self.read_pointer()
        self.write_pointer(reverted(p))
        return p.previous

    # -- startup -----------------------------------------------------------------------------
    def read_or_set_aside(self, name: str, model: type[M], damage: list[str]) -> M | None:
        """At start: a damaged record is renamed `<name>.corrupt-<unix time>` and noted."""
        try:
            return self._read(name, model)
        except StoreError as err:
            aside = self.root / f"{name}.corrupt-{int(time.time())}"
            os.replace(self.root / name, aside)
            fsync_dir(self.root)
            damage.append(f"{err}; moved to {aside.name}")
            log.error("OTA store file damaged; set aside", file=name, error=str(err))
            return None

    def write_record(self, name: str, value: BaseModel) -> None:
        """Replace the JSON record `name` atomically."""
        self._write(name, value)

    def clear_record(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


def default_record(path: Path, manifest: Manifest | None) -> ModelRecord | None:
    """Record of the configured model (None if it is missing). A model directory (the
    Florence-2 fallback's) is identified by `tree_sha256` over its files."""
    if not path.is_file() and not path.is_dir():
        return None
    return ModelRecord(
        name=manifest.name if manifest else path.stem,
        version=manifest.version if manifest else 0,
        sha256=file_sha256(path) if path.is_file() else tree_sha256(path),
        path=str(path.absolute()),
        manifest=manifest,
    )
