"""Start-up resolution of the model store, before the first model loads.

In order: clean leftovers of an interrupted update; read the pointer and the journal, setting
aside what is damaged; settle an interrupted command (`records.settle`); count this start
against a committed model and roll back a crash loop (`records.count_start`); record the
configured model; note damage for the OTA state; prune; pick the model to load.
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from agent.contracts.manifest import Manifest
from agent.contracts.ota import format_rfc3339
from agent.ota.records import (
    Job,
    Pointer,
    Runs,
    count_start,
    crash_loop_job,
    reverted,
    settle,
)
from agent.ota.store import (
    DAMAGE,
    JOB,
    POINTER,
    RUNS,
    CrashLoopLimit,
    Damage,
    LedgerUnreadableError,
    ModelStore,
    default_record,
)
from agent.util.files import file_sha256

log = structlog.get_logger(__name__)


def resolve_startup(
    store: ModelStore,
    default_model: Path,
    default_manifest: Manifest | None,
    crash_loop: CrashLoopLimit | None = None,
) -> tuple[Path, Manifest | None]:
    """Clean up, settle an interrupted command, count starts and crashes; pick the model.

    Returns the artifact path and manifest to load: the pointer's active model when its file
    exists with the right sha256, else the previous one, else the configured default. Damaged
    records are set aside and listed in `damage.json` (`ModelStore.read_damage`).
    """
    store.root.mkdir(parents=True, exist_ok=True)
    store.staging_dir.mkdir(exist_ok=True)
    removed = store.clean_leftovers()
    if removed:
        log.info("removed leftovers of an interrupted update", paths=[str(p) for p in removed])
    damage: list[str] = []
    pointer = store.read_or_set_aside(POINTER, Pointer, damage) or Pointer()
    noted = len(damage)
    job = store.read_or_set_aside(JOB, Job, damage)
    if len(damage) > noted and pointer.probation is not None:
        pointer = reverted(pointer)  # the journal of an uncommitted model is gone: go back
    pointer, job = settle(pointer, job, format_rfc3339(time.time()))
    if crash_loop is not None:
        pointer, job = _count_start(store, pointer, job, crash_loop, damage)
    pointer = pointer.model_copy(
        update={"default": default_record(Path(default_model), default_manifest)}
    )
    store.write_pointer(pointer)
    if job is not None:
        store.write_job(job)
    _record_damage(store, damage)
    store.prune()
    return _pick(pointer, Path(default_model), default_manifest)


def _count_start(
    store: ModelStore, pointer: Pointer, job: Job | None, limit: CrashLoopLimit, damage: list[str]
) -> tuple[Pointer, Job | None]:
    """Count this start against the committed model; roll back once on a crash loop."""
    runs = store.read_or_set_aside(RUNS, Runs, damage) or Runs()
    now = time.time()
    runs, crashes = count_start(runs, pointer, now, limit.crashes, limit.window_s)
    store.write_record(RUNS, runs)
    if not crashes:
        return pointer, job
    job = crash_loop_job(pointer, crashes, limit.window_s, format_rfc3339(now), int(now))
    log.error("committed model in a crash loop; rolling back", detail=job.detail)
    return reverted(pointer), job


def _record_damage(store: ModelStore, damage: list[str]) -> None:
    """Write damage.json for the OTA state (an unreadable ledger included), or clear it."""
    try:
        store.read_ledger()
    except LedgerUnreadableError as err:
        damage.append(f"{err}; commands are refused until an operator clears it")
    if damage:
        store.write_record(DAMAGE, Damage(notes=damage, ts=format_rfc3339(time.time())))
    else:
        store.clear_record(DAMAGE)


def _pick(
    pointer: Pointer, default_model: Path, default_manifest: Manifest | None
) -> tuple[Path, Manifest | None]:
    """The active model if its file is intact, else the previous one, else the default."""
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
    return default_model, default_manifest
