"""On-disk model store, active-model pointer, command journal and ledger.

Layout under `root` (`<state_dir>/models`)::

    <name>/<version>/model.onnx|model.engine   installed artifacts (name is a SafeId)
    <name>/<version>/manifest.json             their manifest
    .staging/<command id>.part                 downloads in progress
    pointer.json                               active + previous model, probation record
    job.json                                   the latest command and its state
    ledger.json                                sequence, seen command ids, committed versions

Every JSON file is replaced atomically (temp file, fsync, rename, fsync of the directory).
`resolve_startup` runs before the first model loads: it cleans leftovers of an interrupted
update, resolves an interrupted command to exactly one terminal state, counts starts on
probation (a crash loop rolls back), and checks the active artifact's sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.contracts.ids import check_id
from agent.manifest import Manifest
from agent.ota.protocol import (
    ModelId,
    OtaAction,
    OtaState,
    Reason,
    SwapReport,
    check_command_id,
    format_rfc3339,
)
from agent.ota.validate import Ledger

log = structlog.get_logger(__name__)

POINTER = "pointer.json"
JOB = "job.json"
LEDGER = "ledger.json"
STAGING = ".staging"
TMP_MARK = ".tmp-"

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRecord(_Strict):
    """A model the device can run."""

    name: str = Field(description="Model name.")
    version: int = Field(ge=0, description="Model version.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the artifact.")
    path: str = Field(description="Absolute path of the artifact.")
    manifest: Manifest | None = Field(None, description="Its manifest, if it has one.")

    def model_id(self) -> ModelId:
        return ModelId(name=self.name, version=self.version, sha256=self.sha256)


class Probation(_Strict):
    """The active model was swapped in by `command_id` and is not committed yet."""

    command_id: str = Field(description="Command that swapped it in.")
    boots: int = Field(0, ge=0, description="Daemon starts since the swap.")
    max_boots: int = Field(ge=1, description="Starts at which the next start rolls back.")


class Pointer(_Strict):
    """Which model runs, which is kept for rollback."""

    active: ModelRecord | None = Field(None, description="Model to load at start; None: default.")
    previous: ModelRecord | None = Field(None, description="Model kept for rollback.")
    probation: Probation | None = Field(
        None, description="Set while the active one is on probation."
    )
    default: ModelRecord | None = Field(
        None, description="The configured model (model.path), recorded at each start."
    )

    def running(self) -> ModelRecord | None:
        """The model that runs: the active one, else the configured default."""
        return self.active or self.default


class Baseline(_Strict):
    """The old model's health just before a swap, for the probation detection-rate check."""

    frames: int = Field(ge=0, description="Frames in the baseline window.")
    detections_per_frame: float | None = Field(None, description="Mean detections per frame.")


class Job(_Strict):
    """The latest command and where it is (journal, rewritten at every state change)."""

    command_id: str = Field(description="Command id.")
    digest: str = Field(description="command_digest of the command.")
    action: OtaAction = Field(description="deploy or rollback.")
    model: ModelId = Field(description="Target model.")
    manifest: Manifest = Field(description="Target manifest.")
    state: OtaState = Field(description="Current state.")
    reason: Reason | None = Field(None, description="Reason of a failed/rolled back/rejected end.")
    detail: str | None = Field(None, description="Human-readable explanation.")
    swap: SwapReport | None = Field(None, description="Swap measurements.")
    baseline: Baseline | None = Field(None, description="Old model's health before the swap.")
    ts: str = Field(description="When the state was entered (UTC RFC 3339).")
    published: bool = Field(False, description="The terminal state was handed to MQTT.")


# ---------------------------------------------------------------------------------------------
# atomic file helpers


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file beside it, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


class StoreError(Exception):
    """The model store is unusable (unreadable files, unsafe names)."""


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
        path = self.root / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return model.model_validate_json(text)
        except ValidationError as err:
            raise StoreError(f"{path} is corrupt: {err}") from None

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

    def read_ledger(self) -> Ledger:
        return self._read(LEDGER, Ledger) or Ledger()

    def write_ledger(self, ledger: Ledger) -> None:
        self._write(LEDGER, ledger)

    # -- installing --------------------------------------------------------------------------
    def install(self, staged: Path, manifest: Manifest) -> ModelRecord:
        """Move a verified staged artifact into `<name>/<version>/` (atomic directory rename)."""
        final = self.model_dir(manifest.name, manifest.version)
        tmp = final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        artifact = tmp / ("model.onnx" if manifest.format == "onnx" else "model.engine")
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
            for path in sorted(self.root.rglob(f"*{TMP_MARK}*"), reverse=True):
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
        """Commit: clear the probation record and prune versions beyond active + previous."""
        p = self.read_pointer()
        self.write_pointer(p.model_copy(update={"probation": None}))
        self.prune()

    def revert(self) -> ModelRecord | None:
        """Roll the pointer back to the previous model; return it (None if nothing kept)."""
        p = self.read_pointer()
        if p.previous is None:
            self.write_pointer(p.model_copy(update={"probation": None}))
            return None
        self.write_pointer(_reverted(p))
        return p.previous

    # -- startup -----------------------------------------------------------------------------
    def resolve_startup(
        self, default_model: Path, default_manifest: Manifest | None
    ) -> tuple[Path, Manifest | None]:
        """Clean up, settle an interrupted command, count probation starts; pick the model.

        Returns the artifact path and manifest to load: the pointer's active model when its
        file exists with the right sha256, else the previous one, else the configured default.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(exist_ok=True)
        removed = self.clean_leftovers()
        if removed:
            log.info("removed leftovers of an interrupted update", paths=[str(p) for p in removed])
        pointer = self.read_pointer()
        job = self.read_job()
        pointer, job = settle(pointer, job, format_rfc3339_now())
        pointer = pointer.model_copy(
            update={"default": default_record(Path(default_model), default_manifest)}
        )
        self.write_pointer(pointer)
        if job is not None:
            self.write_job(job)
        self.prune()
        for record in (pointer.active, pointer.previous):
            if record is None:
                continue
            path = Path(record.path)
            if path.is_file() and file_sha256(path) == record.sha256:
                if record is not pointer.active:
                    log.error(
                        "active model missing or corrupt; running the previous one",
                        active=pointer.active.path if pointer.active else None,
                    )
                return path, record.manifest
            log.error("kept model missing or corrupt", path=record.path, sha256=record.sha256)
        return Path(default_model), default_manifest


def format_rfc3339_now() -> str:
    return format_rfc3339(time.time())


def default_record(path: Path, manifest: Manifest | None) -> ModelRecord | None:
    """Record of the configured model (None if its file is missing)."""
    if not path.is_file():
        return None
    return ModelRecord(
        name=manifest.name if manifest else path.stem,
        version=manifest.version if manifest else 0,
        sha256=file_sha256(path),
        path=str(path.absolute()),
        manifest=manifest,
    )


def settle(pointer: Pointer, job: Job | None, now: str) -> tuple[Pointer, Job | None]:
    """Pure start-up resolution of the pointer and the journal (see docs/ota.md).

    * the active model is on probation for the journal's command: count this start; at
      `max_boots` starts roll back (rolled_back: crash_loop), else stay active;
    * the journal says active but probation is over: committed if the pointer runs its model,
      else rolled_back (interrupted);
    * any other unfinished state: failed (interrupted), pointer untouched;
    * a terminal journal with a stale probation record: finish what the journal says.
    """
    prob = pointer.probation
    if job is None:
        if prob is not None:  # no journal to go with it: treat as committed
            pointer = pointer.model_copy(update={"probation": None})
        return pointer, None
    on_probation = prob is not None and prob.command_id == job.command_id
    if job.state.terminal:
        if on_probation:
            if job.state is OtaState.COMMITTED:
                pointer = pointer.model_copy(update={"probation": None})
            else:
                pointer = _reverted(pointer)
        elif prob is not None:
            pointer = pointer.model_copy(update={"probation": None})
        return pointer, job
    if on_probation and prob is not None:
        boots = prob.boots + 1
        if boots >= prob.max_boots:
            pointer = _reverted(pointer)
            job = _end(
                job,
                OtaState.ROLLED_BACK,
                Reason.CRASH_LOOP,
                f"{boots} starts on probation without a commit",
                now,
            )
            return pointer, job
        pointer = pointer.model_copy(update={"probation": prob.model_copy(update={"boots": boots})})
        return pointer, job.model_copy(update={"state": OtaState.ACTIVE})
    if prob is not None:
        pointer = pointer.model_copy(update={"probation": None})
    if job.state is OtaState.ACTIVE:
        runs_new = pointer.active is not None and pointer.active.sha256 == job.model.sha256
        if runs_new:
            return pointer, _end(job, OtaState.COMMITTED, None, None, now)
        return pointer, _end(
            job,
            OtaState.ROLLED_BACK,
            Reason.INTERRUPTED,
            "stopped during probation; the previous model runs",
            now,
        )
    return pointer, _end(
        job, OtaState.FAILED, Reason.INTERRUPTED, f"the daemon stopped while {job.state.value}", now
    )


def _reverted(pointer: Pointer) -> Pointer:
    if pointer.previous is None:
        return pointer.model_copy(update={"probation": None})
    return Pointer(active=pointer.previous, previous=None, probation=None, default=pointer.default)


def _end(job: Job, state: OtaState, reason: Reason | None, detail: str | None, now: str) -> Job:
    return job.model_copy(
        update={"state": state, "reason": reason, "detail": detail, "ts": now, "published": False}
    )
