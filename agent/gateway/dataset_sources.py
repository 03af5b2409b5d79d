"""Reading the inputs of `dataset build`: reviewed intake items and a base Ultralytics dataset.

Each image becomes a `Source`: the pure `Candidate` the planner decides on, plus where its bytes
and labels are. Intake images get a grey thumbnail (Pillow, never OpenCV) for the
near-duplicate rule; a base dataset (e.g. the one `edge-agent label` writes) keeps its split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.gateway.dataset_plan import BuildError, Candidate
from agent.gateway.review import LabelLine, parse_label_text
from agent.gateway.review_store import ItemRow
from agent.util.near_duplicate import THUMB_SIZE

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Source:
    """One input image: the planner's view, its file, its label lines, its output stem."""

    cand: Candidate
    image: Path
    lines: tuple[LabelLine, ...]
    out_stem: str


def thumbnail(path: Path) -> bytes | None:
    """Grey `THUMB_SIZE` thumbnail bytes of an image (Pillow), or None when it does not decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.draft("L", (THUMB_SIZE[0] * 2, THUMB_SIZE[1] * 2))  # JPEG: decode at 1/n
            return im.convert("L").resize(THUMB_SIZE, Image.Resampling.BOX).tobytes()
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _labels(path: Path, who: str) -> tuple[LabelLine, ...]:
    if not path.is_file():
        return ()
    try:
        return tuple(parse_label_text(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, ValueError) as err:
        raise BuildError(f"{who}: bad label file {path}: {err}") from None


def intake_sources(
    rows: list[ItemRow], intake_dir: Path, progress: Progress
) -> tuple[list[Source], list[str]]:
    """Sources of reviewed intake items, and the keys of items whose image does not decode."""
    out: list[Source] = []
    unreadable: list[str] = []
    for n, row in enumerate(rows, 1):
        image = row.path(intake_dir, ".jpg")
        key = f"intake/{row.key}"
        data = image.read_bytes() if image.is_file() else b""
        thumb = thumbnail(image) if data else None
        if thumb is None:
            unreadable.append(key)
            continue
        lines = _labels(row.path(intake_dir, ".txt"), key)
        cand = Candidate(
            key=key,
            group=f"intake/{row.device}/{row.camera}",
            time=row.captured,
            base_split=None,
            class_names=tuple(row.class_names),
            classes=tuple(ln.class_id for ln in lines),
            sha256=hashlib.sha256(data).hexdigest(),
            thumb=thumb,
        )
        out.append(Source(cand, image, lines, key.replace("/", "__")))
        progress("reading intake", n, len(rows))
    return out, unreadable


def label_of(image: Path) -> Path:
    """The Ultralytics label file of an image: the last 'images' folder becomes 'labels'."""
    parts = list(image.parts)
    at = [i for i, p in enumerate(parts) if p == "images"]
    if not at:
        raise BuildError(f"{image}: an Ultralytics image lies under an 'images' folder")
    parts[at[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


def _names(data: dict[str, Any], path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise BuildError(f"{path}: 'names' must be a list or a {{0: name, ...}} mapping")


def read_data_yaml(base: Path) -> tuple[dict[str, Any], list[str]]:
    """The base dataset's data.yaml and its class names."""
    path = base / "data.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise BuildError(f"--base {base}: cannot read data.yaml ({err})") from None
    if not isinstance(data, dict):
        raise BuildError(f"{path}: not a mapping")
    return data, _names(data, path)


def base_sources(base: Path, progress: Progress) -> tuple[list[Source], list[str]]:
    """Sources of a base Ultralytics dataset (train and val splits) and its class names."""
    data, names = read_data_yaml(base)
    root = base / str(data.get("path") or ".")
    out: list[Source] = []
    for split in ("train", "val"):
        rel = data.get(split)
        if not isinstance(rel, str):
            raise BuildError(f"{base}/data.yaml: '{split}' must name an image folder")
        folder = root / rel
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for n, image in enumerate(files, 1):
            key = f"base/{split}/{image.stem}"
            lines = _labels(label_of(image), key)
            cand = Candidate(
                key=key,
                group=key,
                time=0.0,
                base_split=split,
                class_names=tuple(names),
                classes=tuple(ln.class_id for ln in lines),
                sha256=hashlib.sha256(image.read_bytes()).hexdigest(),
            )
            out.append(Source(cand, image, lines, key.replace("/", "__")))
            progress(f"reading base {split}", n, len(files))
    return out, names
