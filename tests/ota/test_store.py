"""The model store: atomic pointer, install/prune, start-up settling and crash-loop rollback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.contracts.manifest import Manifest
from agent.contracts.ota import ModelId, OtaAction, OtaState, Reason
from agent.ota.startup import resolve_startup
from agent.ota.store import (
    Job,
    ModelRecord,
    ModelStore,
    Pointer,
    Probation,
    StoreError,
    settle,
)
from tests.ota.conftest import manifest


def artifact(tmp: Path, name: str, content: bytes) -> tuple[Path, Manifest]:
    """A staged file and a manifest matching it."""
    p = tmp / name
    p.write_bytes(content)
    m = manifest(
        version=int(name.split("v")[-1]),
        sha256=hashlib.sha256(content).hexdigest(),
        length=len(content),
    )
    return p, m


def record(version: int, sha: str = "ab" * 32, path: str = "/x") -> ModelRecord:
    return ModelRecord(name="demo-yolov8n", version=version, sha256=sha, path=path)


def job(state: OtaState, version: int = 3, cmd: str = "c1") -> Job:
    m = manifest(version=version)
    return Job(
        command_id=cmd,
        digest="d",
        action=OtaAction.DEPLOY,
        model=ModelId(name=m.name, version=m.version, sha256=m.sha256),
        manifest=m,
        state=state,
        ts="2026-11-27T00:00:00Z",
    )


OLD = record(2, "11" * 32)
NEW = record(3, "ab" * 32)

SETTLE = [
    # killed while downloading: failed(interrupted), pointer untouched
    (Pointer(active=OLD), OtaState.DOWNLOADING, OtaState.FAILED, Reason.INTERRUPTED, OLD),
    # killed while verifying
    (Pointer(active=OLD), OtaState.VERIFYING, OtaState.FAILED, Reason.INTERRUPTED, OLD),
    # killed while loading
    (Pointer(active=OLD), OtaState.LOADING, OtaState.FAILED, Reason.INTERRUPTED, OLD),
    # killed while validating
    (Pointer(active=OLD), OtaState.VALIDATING, OtaState.FAILED, Reason.INTERRUPTED, OLD),
    # killed between the pointer switch and the journal's `active`: new model, on probation
    (
        Pointer(active=NEW, previous=OLD, probation=Probation(command_id="c1", max_boots=3)),
        OtaState.VALIDATING,
        OtaState.ACTIVE,
        None,
        NEW,
    ),
    # killed during probation (first restart): stays on probation with the new model
    (
        Pointer(active=NEW, previous=OLD, probation=Probation(command_id="c1", max_boots=3)),
        OtaState.ACTIVE,
        OtaState.ACTIVE,
        None,
        NEW,
    ),
    # third start on probation: crash loop, back to the old model
    (
        Pointer(
            active=NEW, previous=OLD, probation=Probation(command_id="c1", boots=2, max_boots=3)
        ),
        OtaState.ACTIVE,
        OtaState.ROLLED_BACK,
        Reason.CRASH_LOOP,
        OLD,
    ),
    # killed between the journal's `committed` and clearing probation: committed stands
    (
        Pointer(active=NEW, previous=OLD, probation=Probation(command_id="c1", max_boots=3)),
        OtaState.COMMITTED,
        OtaState.COMMITTED,
        None,
        NEW,
    ),
    # journal active, probation already cleared, pointer on the new model: committed
    (Pointer(active=NEW, previous=OLD), OtaState.ACTIVE, OtaState.COMMITTED, None, NEW),
    # journal active, pointer already back on the old model: rolled back
    (Pointer(active=OLD), OtaState.ACTIVE, OtaState.ROLLED_BACK, Reason.INTERRUPTED, OLD),
    # a finished command stays as it was
    (Pointer(active=OLD), OtaState.FAILED, OtaState.FAILED, None, OLD),
]


@pytest.mark.parametrize(
    ("pointer", "before", "after", "reason", "active"),
    SETTLE,
    ids=[f"{s[1].value}->{s[2].value}-{i}" for i, s in enumerate(SETTLE)],
)
def test_settle_resolves_to_one_state(
    pointer: Pointer, before: OtaState, after: OtaState, reason: Reason | None, active: ModelRecord
) -> None:
    """An interrupted command resolves to exactly one state and a consistent pointer."""
    p, j = settle(pointer, job(before), "2026-11-27T01:00:00Z")
    assert j is not None and j.state is after
    assert j.reason is reason
    assert p.active == active
    if after.terminal:
        assert p.probation is None


def test_crash_loop_rolls_back_on_third_start(tmp_path: Path) -> None:
    """Starts on probation are counted on disk; the third one runs the previous model."""
    store = ModelStore(tmp_path / "models")
    old_file, old_m = artifact(tmp_path, "v2", b"old model")
    new_file, new_m = artifact(tmp_path, "v3", b"new model")
    old = store.install(old_file, old_m)
    new = store.install(new_file, new_m)
    store.activate(new, old, "c1", max_boots=3)
    store.write_job(
        job(OtaState.ACTIVE, version=3).model_copy(
            update={"model": ModelId(name=new.name, version=3, sha256=new.sha256)}
        )
    )
    default = tmp_path / "default.onnx"
    default.write_bytes(b"default")
    seen = [resolve_startup(store, default, None)[0] for _ in range(3)]
    assert seen == [Path(new.path), Path(new.path), Path(old.path)]
    j = store.read_job()
    assert j is not None and j.state is OtaState.ROLLED_BACK and j.reason is Reason.CRASH_LOOP
    assert store.read_pointer().probation is None


def test_startup_cleans_leftovers_and_unreferenced_versions(tmp_path: Path) -> None:
    """Staging files, temp files and versions nobody points at are removed at start."""
    store = ModelStore(tmp_path / "models")
    f2, m2 = artifact(tmp_path, "v2", b"two")
    f3, m3 = artifact(tmp_path, "v3", b"three")
    kept = store.install(f2, m2)
    orphan = store.install(f3, m3)  # installed, but the pointer never switched (killed)
    store.write_pointer(Pointer(active=kept))
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    (store.staging_dir / "c9.part").write_bytes(b"partial")
    (store.root / ".pointer.json.tmp-999").write_bytes(b"{half")
    (store.root / "demo-yolov8n" / ".4.tmp-999").mkdir()
    path, m = resolve_startup(store, tmp_path / "nowhere.onnx", None)
    assert path == Path(kept.path) and m == m2
    assert list(store.staging_dir.iterdir()) == []
    assert not Path(orphan.path).exists()
    assert [p.name for p in store.root.rglob("*tmp*")] == []


def test_corrupt_active_falls_back_to_previous(tmp_path: Path) -> None:
    """An active artifact whose sha256 no longer matches is not loaded; the previous one is."""
    store = ModelStore(tmp_path / "models")
    f2, m2 = artifact(tmp_path, "v2", b"two")
    f3, m3 = artifact(tmp_path, "v3", b"three")
    old, new = store.install(f2, m2), store.install(f3, m3)
    store.write_pointer(Pointer(active=new, previous=old))
    Path(new.path).write_bytes(b"thre3")
    path, _ = resolve_startup(store, tmp_path / "nowhere.onnx", None)
    assert path == Path(old.path)


def test_prune_keeps_active_and_previous(tmp_path: Path) -> None:
    """After a commit only the active and the previous versions stay on disk."""
    store = ModelStore(tmp_path / "models")
    recs = [store.install(*artifact(tmp_path, f"v{v}", f"m{v}".encode())) for v in (2, 3, 4)]
    store.activate(recs[2], recs[1], "c1", 3)
    store.end_probation()
    versions = sorted(p.name for p in (store.root / "demo-yolov8n").iterdir())
    assert versions == ["3", "4"]


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", "UPPER", ""])
def test_unsafe_model_names_refused(tmp_path: Path, name: str) -> None:
    """A model name that could leave the store is refused."""
    with pytest.raises((ValueError, StoreError)):
        ModelStore(tmp_path).model_dir(name, 1)


WRITER = """
import sys, time
from pathlib import Path
from agent.ota.store import ModelStore, Pointer, ModelRecord
store = ModelStore(Path(sys.argv[1]))
i = 0
print("ready", flush=True)
while True:
    i += 1
    store.write_pointer(Pointer(active=ModelRecord(name="m", version=i, sha256="ab" * 32,
                                                   path="/x" * 2000)))
"""


def test_pointer_survives_kill_during_writes(tmp_path: Path) -> None:
    """kill -9 of a process rewriting the pointer in a loop never leaves a torn pointer."""
    root = tmp_path / "models"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pointer = ModelStore(root).read_pointer()
    assert pointer.active is not None and pointer.active.version >= 1
    json.loads((root / "pointer.json").read_text())


# -- damaged files -------------------------------------------------------------------------
DAMAGE = [
    b'{"active": {"name": "demo-yolov8n", "vers',  # truncated mid-write by a bad disk
    b"\xff\xfe\x00garbage\x80\x81",  # not UTF-8
    b"",  # empty
]


@pytest.mark.parametrize("name", ["pointer.json", "job.json"])
@pytest.mark.parametrize("content", DAMAGE, ids=["truncated", "not-utf8", "empty"])
def test_damaged_pointer_or_journal_starts_on_the_configured_model(
    tmp_path: Path, name: str, content: bytes
) -> None:
    """A damaged pointer or journal is set aside; the start runs model.path, damage noted."""
    store = ModelStore(tmp_path / "models")
    old_file, old_m = artifact(tmp_path, "v2", b"old")
    new_file, new_m = artifact(tmp_path, "v3", b"new")
    store.activate(store.install(new_file, new_m), store.install(old_file, old_m), "c1", 3)
    if name == "pointer.json":
        (store.root / name).write_bytes(content)
    else:
        (store.root / name).write_bytes(content)
        store.write_pointer(Pointer())  # nothing to fall back on but the default
    default = tmp_path / "default.onnx"
    default.write_bytes(b"default")
    path, m = resolve_startup(store, default, None)
    assert (path, m) == (default, None)
    damage = store.read_damage()
    assert damage is not None and name in damage.notes[0] and "corrupt" in damage.notes[0]
    assert [p.name.split(".corrupt-")[0] for p in store.root.glob("*.corrupt-*")] == [name]
    resolve_startup(store, default, None)  # the next start is clean again
    assert store.read_damage() is None


def test_damaged_journal_on_probation_goes_back_to_previous(tmp_path: Path) -> None:
    """Without the journal of an uncommitted model, the start runs the kept previous model."""
    store = ModelStore(tmp_path / "models")
    old_file, old_m = artifact(tmp_path, "v2", b"old")
    new_file, new_m = artifact(tmp_path, "v3", b"new")
    old = store.install(old_file, old_m)
    store.activate(store.install(new_file, new_m), old, "c1", 3)
    (store.root / "job.json").write_bytes(b"\x00\x01")
    path, _ = resolve_startup(store, tmp_path / "nowhere.onnx", None)
    assert path == Path(old.path)


def _ledger_with_sequence(store: ModelStore, seq: int) -> None:
    from agent.ota.validate import Ledger

    store.write_ledger(Ledger(last_sequence=seq))


def test_damaged_ledger_is_restored_from_its_backup(tmp_path: Path) -> None:
    """A truncated ledger is read from ledger.json.bak: the sequence is never reset."""
    store = ModelStore(tmp_path)
    _ledger_with_sequence(store, 41)
    (tmp_path / "ledger.json").write_bytes(b'{"last_sequ')
    assert store.read_ledger().last_sequence == 41
    assert json.loads((tmp_path / "ledger.json").read_text())["last_sequence"] == 41


@pytest.mark.parametrize(
    "files",
    [
        {"ledger.json": b"\xff\xfe", "ledger.json.bak": b"{"},  # both damaged
        {"ledger.json": b"{trunc"},  # damaged, no backup
        {"ledger.json.bak": b"\x80"},  # ledger gone, backup damaged
    ],
    ids=["both-damaged", "no-backup", "backup-only-damaged"],
)
def test_unreadable_ledger_refuses_instead_of_resetting(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    """When no copy of the ledger can be read, reading it raises; nothing is rewritten."""
    from agent.ota.store import LedgerUnreadableError

    store = ModelStore(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(LedgerUnreadableError):
        store.read_ledger()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


def test_unreadable_ledger_is_reported_as_damage_at_start(tmp_path: Path) -> None:
    """The start notes an unreadable ledger in damage.json (the OTA state's detail)."""
    store = ModelStore(tmp_path / "models")
    store.root.mkdir()
    (store.root / "ledger.json").write_bytes(b"\xff")
    resolve_startup(store, tmp_path / "nowhere.onnx", None)
    damage = store.read_damage()
    assert damage is not None and "operator" in damage.notes[-1]


# -- crash loop on a committed model --------------------------------------------------------
def _committed(store: ModelStore, tmp_path: Path) -> tuple[ModelRecord, ModelRecord]:
    old_file, old_m = artifact(tmp_path, "v2", b"old")
    new_file, new_m = artifact(tmp_path, "v3", b"new")
    old, new = store.install(old_file, old_m), store.install(new_file, new_m)
    store.activate(new, old, "c1", 3)
    store.end_probation()
    return old, new


def test_committed_model_crashing_rolls_back_once(tmp_path: Path) -> None:
    """N starts without a clean stop roll the committed model back, once, as crash_loop."""
    from agent.ota.store import CrashLoopLimit

    store = ModelStore(tmp_path / "models")
    old, new = _committed(store, tmp_path)
    limit = CrashLoopLimit(crashes=2, window_s=600)
    default = tmp_path / "nowhere.onnx"
    seen = [resolve_startup(store, default, None, limit)[0] for _ in range(5)]
    assert seen == [Path(new.path)] * 2 + [Path(old.path)] * 3
    job = store.read_job()
    assert job is not None and job.state is OtaState.ROLLED_BACK
    assert job.reason is Reason.CRASH_LOOP and job.model.sha256 == old.sha256


def test_clean_stops_are_not_crashes(tmp_path: Path) -> None:
    """Orderly stops between starts never count as crashes."""
    from agent.ota.store import CrashLoopLimit

    store = ModelStore(tmp_path / "models")
    _old, new = _committed(store, tmp_path)
    limit = CrashLoopLimit(crashes=2, window_s=600)
    for _ in range(4):
        assert resolve_startup(store, tmp_path / "nowhere.onnx", None, limit)[0] == Path(new.path)
        store.mark_clean_stop()


def test_crashes_outside_the_window_do_not_count() -> None:
    """Crashes older than the window are forgotten (pure decision)."""
    from agent.ota.records import Runs, count_start

    a = ModelRecord(name="m", version=1, sha256="aa" * 32, path="/a")
    b = ModelRecord(name="m", version=2, sha256="bb" * 32, path="/b")
    pointer = Pointer(active=b, previous=a)
    runs = Runs(sha256=b.sha256, started=1000.0, crashes=[10.0])
    after, crashes = count_start(runs, pointer, now=1500.0, limit=2, window_s=600)
    assert crashes == 0 and after.crashes == [1000.0]
    _, crashes = count_start(runs, pointer, now=1500.0, limit=2, window_s=2000)
    assert crashes == 2
