"""An Ultralytics-layout dataset split: data.yaml, images/<split>/, labels/<split>/."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import Field

from agent.util.files import file_sha256
from agent.util.models import FrozenModel

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(Exception):
    """The dataset or split is missing or malformed."""


class SplitItem(FrozenModel):
    image: Path
    label: Path | None = Field(description="None: no label file (an image without objects).")


class Split(FrozenModel):
    root: Path
    name: str
    names: tuple[str, ...]
    items: tuple[SplitItem, ...]


def read_names(data_yaml: Path) -> tuple[str, ...]:
    """Class names of data.yaml (`names` as a list or an {index: name} map)."""
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{data_yaml}: {exc}") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names, key=int))
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    raise DatasetError(f"{data_yaml}: no class names (`names:`)")


def split_dir(root: Path, data_yaml: Path, split: str) -> Path:
    """images/<split> or what data.yaml names for it (relative to the dataset folder)."""
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    entry = data.get(split) if isinstance(data, dict) else None
    return root / str(entry) if isinstance(entry, str) else root / "images" / split


def load_split(dataset: Path, split: str) -> Split:
    """The images of one split and their label files (images/X -> labels/X, Ultralytics' rule)."""
    root = dataset.parent if dataset.is_file() else dataset
    data_yaml = dataset if dataset.is_file() else dataset / "data.yaml"
    if not data_yaml.is_file():
        raise DatasetError(f"{dataset}: no data.yaml")
    images_dir = split_dir(root, data_yaml, split)
    if not images_dir.is_dir():
        raise DatasetError(f"{dataset}: no split {split!r} ({images_dir} is not a folder)")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{images_dir}: no images")
    items = []
    for image in images:
        parts = list(image.parts)
        idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
        label = None
        if idx is not None:
            parts[idx] = "labels"
            candidate = Path(*parts).with_suffix(".txt")
            label = candidate if candidate.is_file() else None
        items.append(SplitItem(image=image, label=label))
    return Split(root=root, name=split, names=read_names(data_yaml), items=tuple(items))


def split_sha256(split: Split) -> str:
    """sha256 over the split's files: each image and label as `relative path NUL sha256 LF`,
    in path order, so renaming, adding, removing or editing any of them changes it."""
    digest = hashlib.sha256()
    files = [i.image for i in split.items] + [i.label for i in split.items if i.label]
    for path in sorted(files, key=lambda p: p.relative_to(split.root).as_posix()):
        rel = path.relative_to(split.root).as_posix()
        digest.update(f"{rel}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()
