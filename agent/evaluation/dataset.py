"""An Ultralytics-layout dataset split: data.yaml, images/<split>/, labels/<split>/."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.contracts.dataset import GATE_DIR, GATE_MANIFEST, gate_digest, gate_set_sha256
from agent.util.files import file_sha256
from agent.util.labels import class_names
from agent.util.models import FrozenModel

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(Exception):
    """The dataset or split is missing or malformed."""


class SplitItem(FrozenModel):
    image: Path
    label: Path | None
    """None: no label file (an image without objects)."""


class Split(FrozenModel):
    root: Path
    name: str
    names: tuple[str, ...]
    items: tuple[SplitItem, ...]
    gate: bool = False
    """The gate set folder (its digest is gate_set_sha256)."""


def read_names(data_yaml: Path) -> tuple[str, ...]:
    """Class names of data.yaml (`names` as a list or an {index: name} map)."""
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{data_yaml}: {exc}") from exc
    try:
        names = class_names(data)
    except ValueError as exc:
        raise DatasetError(f"{data_yaml}: {exc}") from None
    return tuple(names[k] for k in sorted(names))


def split_dir(root: Path, data_yaml: Path, split: str) -> Path:
    """images/<split> or what data.yaml names for it (relative to the dataset folder)."""
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    entry = data.get(split) if isinstance(data, dict) else None
    return root / str(entry) if isinstance(entry, str) else root / "images" / split


def gate_folder(dataset: Path) -> Path | None:
    """The gate set folder of DATASET: DATASET/gate, or DATASET itself when it is one."""
    folder = dataset.parent if dataset.is_file() else dataset
    if (folder / GATE_MANIFEST).is_file():
        return folder
    if (folder / GATE_DIR).is_dir():
        return folder / GATE_DIR
    return None


def load_split(dataset: Path, split: str) -> Split:
    """The images of one split and their label files (images/X -> labels/X, Ultralytics' rule).

    Split `gate` is the held-out gate set built by `edge-gateway dataset build` (DATASET/gate,
    or DATASET itself when it is a gate folder).
    """
    if split == "gate":
        gate = gate_folder(dataset)
        if gate is None:
            raise DatasetError(f"{dataset}: no gate set (no {GATE_DIR}/ folder or {GATE_MANIFEST})")
        root, data_yaml, images_dir = gate, gate / "data.yaml", gate / "images"
    else:
        root = dataset.parent if dataset.is_file() else dataset
        data_yaml = dataset if dataset.is_file() else dataset / "data.yaml"
        images_dir = split_dir(root, data_yaml, split) if data_yaml.is_file() else root
    if not data_yaml.is_file():
        raise DatasetError(f"{dataset}: no data.yaml")
    if not images_dir.is_dir():
        raise DatasetError(f"{dataset}: no split {split!r} ({images_dir} is not a folder)")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{images_dir}: no images")
    items = [SplitItem(image=image, label=label_of(image)) for image in images]
    return Split(
        root=root, name=split, names=read_names(data_yaml), items=tuple(items), gate=split == "gate"
    )


def label_of(image: Path) -> Path | None:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`, suffix .txt."""
    parts = list(image.parts)
    if "images" not in parts:
        return None
    idx = len(parts) - 1 - parts[::-1].index("images")
    parts[idx] = "labels"
    label = Path(*parts).with_suffix(".txt")
    return label if label.is_file() else None


def split_sha256(split: Split) -> str:
    """The split's digest: for the gate set, `gate_set_sha256` of its folder (what `dataset
    build` writes into gate.json); for another split, the same `gate_digest` rule over its
    images and labels."""
    if split.gate:
        return gate_set_sha256(split.root)
    files = [i.image for i in split.items] + [i.label for i in split.items if i.label]
    return gate_digest({p.relative_to(split.root).as_posix(): file_sha256(p) for p in files})
