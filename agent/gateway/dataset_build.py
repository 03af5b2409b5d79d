"""`edge-gateway dataset build`: reviewed intake (+ a base dataset) -> an Ultralytics dataset.

Runs locally on the gateway's data folder (no server needed; it only reads the review table).
Written under OUT:

    data.yaml            names, train/val folders, `test: gate/images` when the gate has images
    images/{train,val}/  image bytes copied unchanged
    labels/{train,val}/  YOLO labels, class ids remapped to the merged class map
    gate/                the gate set: images/, labels/, data.yaml, gate.json (kept across
                         builds, grows only with --grow-gate; its digest: agent.util.dataset_hash)
    dataset.json         agent.contracts.dataset.DatasetManifest, written last

A rebuild into the same OUT replaces train/val (version + 1) and keeps the gate. The decisions
are `agent.gateway.dataset_plan`'s; the inputs are read by `agent.gateway.dataset_sources`.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml
from pydantic import ValidationError

from agent.contracts.dataset import (
    DATASET_MANIFEST,
    GATE_DIR,
    GATE_MANIFEST,
    DatasetManifest,
    DatasetSource,
    GateItem,
    GateManifest,
    SplitStats,
)
from agent.gateway.dataset_plan import BuildError, Plan, plan_dataset
from agent.gateway.dataset_sources import Progress, Source, base_sources, intake_sources
from agent.gateway.review import LabelLine
from agent.gateway.review_store import ItemRow
from agent.util.dataset_hash import gate_set_sha256, tree_digests
from agent.util.files import atomic_write

FILE_MODE = 0o644
GATE_FOLDERS = {"train": "images", "val": "images", "test": "images"}
PREVIOUS = ".dataset.json.previous"  # the last manifest while a rebuild runs


@dataclass(frozen=True)
class BuildOptions:
    """What `dataset build` was asked."""

    name: str
    out: Path
    base: Path | None
    gap_s: float
    val_fraction: float
    min_change: float
    grow_gate: int
    filter_text: str  # the intake filters, for dataset.json's sources


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, FILE_MODE)


LAYOUT = frozenset({"images", "labels", "data.yaml", GATE_DIR, DATASET_MANIFEST, PREVIOUS})


def previous_manifest(out: Path) -> DatasetManifest | None:
    """The dataset.json of an earlier build in OUT (also of one interrupted midway), or None.

    Raises:
        BuildError: OUT is a file, holds files of something else, or an unreadable manifest.
    """
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(
        p.name not in LAYOUT and not p.name.startswith(".") for p in out.iterdir()
    ):
        raise BuildError(
            f"--out {out} holds files that are not part of a dataset built by "
            f"'edge-gateway dataset build'; choose an empty or new folder"
        )
    for path in (out / DATASET_MANIFEST, out / PREVIOUS):
        if path.is_file():
            try:
                return DatasetManifest.model_validate_json(path.read_bytes())
            except ValidationError as err:
                raise BuildError(f"{path} is unreadable: {err.errors()[0]['msg']}") from None
    return None


def load_gate(gate: Path) -> GateManifest:
    """The gate's manifest, checked against its files (an empty gate if there is none yet).

    Files a growth interrupted before its gate.json left behind are removed (the gate is what
    gate.json lists); any other difference is a BuildError.
    """
    path = gate / GATE_MANIFEST
    if not path.is_file():
        return GateManifest(version=0, classes=[], sha256="", items=[])
    try:
        manifest = GateManifest.model_validate_json(path.read_bytes())
    except ValidationError as err:
        raise BuildError(f"{path} is unreadable: {err.errors()[0]['msg']}") from None
    if gate_set_sha256(gate) != manifest.sha256:
        listed = {i.image for i in manifest.items} | {i.label for i in manifest.items}
        for folder in ("images", "labels"):
            for leftover in (gate / folder).glob("*"):
                if f"{folder}/{leftover.name}" not in listed:
                    leftover.unlink()
        _write(gate / "data.yaml", _data_yaml(manifest.classes, GATE_FOLDERS))
    actual = gate_set_sha256(gate)
    if actual != manifest.sha256:
        raise BuildError(
            f"gate set {gate} changed since it was written (sha256 {actual[:12]}, gate.json says "
            f"{manifest.sha256[:12]}); restore it: a gate set is never edited by hand"
        )
    return manifest


def label_text(src: Source, classes: list[str]) -> str:
    """The source's labels with class ids remapped by name into `classes`."""
    names = src.cand.class_names
    return "".join(
        LabelLine(classes.index(names[ln.class_id]), ln.rest).text() + "\n" for ln in src.lines
    )


def _data_yaml(classes: list[str], folders: dict[str, str]) -> bytes:
    data = {**folders, "nc": len(classes), "names": dict(enumerate(classes))}
    return yaml.safe_dump(data, sort_keys=False).encode()


def _put(path: Path, data: bytes) -> None:
    """Write a dataset file unless it already holds `data`. A plain write: the build syncs the
    file system once before it writes a manifest, which is what marks the files complete."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    path.chmod(FILE_MODE)


def write_split(out: Path, plan: Plan, by_key: dict[str, Source], progress: Progress) -> None:
    """images/{train,val} and labels/{train,val} of the plan; a rebuild rewrites only what
    changed and removes what is no longer planned."""
    wanted: dict[Path, tuple[Source, str]] = {}
    for key, split in plan.split.items():
        src = by_key[key]
        wanted[out / "images" / split / f"{src.out_stem}{src.image.suffix.lower()}"] = (src, "")
        wanted[out / "labels" / split / f"{src.out_stem}.txt"] = (src, "labels")
    for kind in ("images", "labels"):
        for split in ("train", "val"):
            folder = out / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.iterdir():
                if old not in wanted:
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
    for n, (path, (src, what)) in enumerate(sorted(wanted.items()), 1):
        data = label_text(src, plan.classes).encode() if what else src.image.read_bytes()
        _put(path, data)
        progress("writing", n, len(wanted))


def grow_gate(
    gate: Path, manifest: GateManifest, plan: Plan, by_key: dict[str, Source]
) -> GateManifest:
    """Add the plan's new gate images; the updated (and written) gate manifest."""
    if not plan.new_gate and (gate / GATE_MANIFEST).is_file():
        return manifest
    version = manifest.version + (1 if plan.new_gate else 0)
    items = list(manifest.items)
    for key in plan.new_gate:
        src = by_key[key]
        image = f"images/{src.out_stem}{src.image.suffix.lower()}"
        label = f"labels/{src.out_stem}.txt"
        _put(gate / image, src.image.read_bytes())
        _put(gate / label, label_text(src, plan.classes).encode())
        items.append(GateItem(source=key, image=image, label=label, added_in=version))
    classes = plan.classes if plan.new_gate else manifest.classes
    for folder in ("images", "labels"):
        (gate / folder).mkdir(parents=True, exist_ok=True)
    _write(gate / "data.yaml", _data_yaml(classes, GATE_FOLDERS))
    os.sync()  # the new gate files are on disk before gate.json lists them
    new = GateManifest(
        version=version, classes=list(classes), sha256=gate_set_sha256(gate), items=items
    )
    _write(gate / GATE_MANIFEST, (new.model_dump_json(by_alias=True, indent=1) + "\n").encode())
    return new


def _stats(folder: Path, classes: list[str]) -> SplitStats:
    boxes: Counter[str] = Counter()
    images = 0
    for label in sorted(folder.glob("*.txt")):
        images += 1
        for line in label.read_text(encoding="utf-8").splitlines():
            if line.strip():
                cid = int(line.split()[0])
                boxes[classes[cid] if cid < len(classes) else str(cid)] += 1
    return SplitStats(images=images, boxes=dict(sorted(boxes.items())))


def build_dataset(
    opts: BuildOptions, rows: list[ItemRow], intake_dir: Path, progress: Progress
) -> DatasetManifest:
    """Build OUT (see the module docstring); the manifest written. BuildError on bad input."""
    previous = previous_manifest(opts.out)
    gate_dir = opts.out / GATE_DIR
    gate = load_gate(gate_dir)
    sources, unreadable = intake_sources(rows, intake_dir, progress)
    fixed: list[tuple[str, list[str]]] = []
    if previous is not None:
        fixed.append((f"the previous build {opts.out / DATASET_MANIFEST}", previous.classes))
    fixed.append((f"the gate set {gate_dir / GATE_MANIFEST}", gate.classes))
    base: list[Source] = []
    if opts.base is not None:
        base, names = base_sources(opts.base, progress)
        fixed.append((f"the base dataset {opts.base / 'data.yaml'}", names))
    by_key = {s.cand.key: s for s in [*sources, *base]}
    plan = plan_dataset(
        [s.cand for s in by_key.values()],
        {i.source for i in gate.items},
        fixed,
        gap_s=opts.gap_s,
        val_fraction=opts.val_fraction,
        min_change=opts.min_change,
        grow_gate=opts.grow_gate,
    )
    if unreadable:
        plan.dropped["unreadable"] = len(unreadable)
    opts.out.mkdir(parents=True, exist_ok=True)
    if (opts.out / DATASET_MANIFEST).is_file():  # incomplete until written again
        (opts.out / DATASET_MANIFEST).replace(opts.out / PREVIOUS)
    write_split(opts.out, plan, by_key, progress)
    gate = grow_gate(gate_dir, gate, plan, by_key)
    folders = {"train": "images/train", "val": "images/val"}
    if gate.items:
        folders["test"] = f"{GATE_DIR}/images"
    _write(opts.out / "data.yaml", _data_yaml(plan.classes, folders))
    manifest = _manifest(opts, previous, plan, gate)
    os.sync()  # every file is on disk before dataset.json says the dataset is complete
    text = manifest.model_dump_json(by_alias=True, indent=1) + "\n"
    _write(opts.out / DATASET_MANIFEST, text.encode())
    (opts.out / PREVIOUS).unlink(missing_ok=True)
    return manifest


def _manifest(
    opts: BuildOptions,
    previous: DatasetManifest | None,
    plan: Plan,
    gate: GateManifest,
) -> DatasetManifest:
    used = [*plan.split, *plan.new_gate]
    n_intake = sum(k.startswith("intake/") for k in used)
    n_base = sum(k.startswith("base/") for k in used)
    sources = [DatasetSource(kind="intake", ref=opts.filter_text, items=n_intake)]
    if opts.base is not None:
        sources.append(DatasetSource(kind="base", ref=str(opts.base.resolve()), items=n_base))
    splits = {
        "train": _stats(opts.out / "labels" / "train", plan.classes),
        "val": _stats(opts.out / "labels" / "val", plan.classes),
        "gate": _stats(opts.out / GATE_DIR / "labels", gate.classes),
    }
    return DatasetManifest(
        name=opts.name,
        version=1 if previous is None else previous.version + 1,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        classes=plan.classes,
        sources=sources,
        splits=splits,
        dropped=dict(sorted(plan.dropped.items())),
        settings={
            "gap_s": opts.gap_s,
            "val_fraction": opts.val_fraction,
            "min_change": opts.min_change,
        },
        gate_sha256=gate.sha256,
        files=tree_digests(opts.out, frozenset({DATASET_MANIFEST})),
    )
