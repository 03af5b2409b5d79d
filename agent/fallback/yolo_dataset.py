"""Read an Ultralytics YOLO dataset (what `edge-agent label` and the gateway build write).

    data.yaml            names (list or {id: name}), train / val image folders (relative to
                         `path:` if given, else to data.yaml's folder)
    images/<split>/*.jpg labels/<split>/<stem>.txt: `class cx cy w h` (boxes) or
                         `class x1 y1 x2 y2 ...` (segments, read as their bounding box)

Only what fine-tuning needs: each image's path, size and labelled boxes in pixels. Errors
name the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.fallback.targets import LabelledObject
from agent.util.labels import class_names, parse_box_line, segment_line_to_box_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetError(ValueError):
    """The dataset cannot be read; the message names the file."""


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes:
        image: the image file.
        size: (width, height) in pixels.
        objects: its labelled boxes in pixels (may be empty: a negative example).
    """

    image: Path
    size: tuple[int, int]
    objects: tuple[LabelledObject, ...]


def read_names(root: Path) -> tuple[dict[int, str], dict[str, object]]:
    """Class names by id and the parsed data.yaml of the dataset at `root`."""
    path = root / "data.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DatasetError(f"{path}: cannot read the dataset description: {err}") from None
    try:
        return class_names(data), data
    except ValueError as err:
        raise DatasetError(f"{path}: {err}") from None


def _image_dir(root: Path, data: dict[str, object], split: str) -> Path:
    rel = data.get(split)
    if not isinstance(rel, str):
        raise DatasetError(f"{root / 'data.yaml'}: no '{split}:' image folder")
    base = Path(str(data["path"])) if isinstance(data.get("path"), str) else root
    return (base if base.is_absolute() else root / base) / rel


def _box(line: str, where: str) -> tuple[int, float, float, float, float]:
    """(class, cx, cy, w, h) normalised, from a box or segment line."""
    try:
        box_line = segment_line_to_box_line(line) if len(line.split()) > 5 else line
        return parse_box_line(box_line)
    except ValueError as err:
        raise DatasetError(f"{where}: bad label line {line!r}: {err}") from None


def read_labels(path: Path, names: dict[int, str], size: tuple[int, int]) -> list[LabelledObject]:
    """The boxes of one label file in pixels (no file: no objects)."""
    if not path.is_file():
        return []
    w, h = size
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        cls, cx, cy, bw, bh = _box(line, f"{path}:{n}")
        if cls not in names:
            raise DatasetError(f"{path}:{n}: class {cls} is not in data.yaml's names")
        box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
        out.append(LabelledObject(label=names[cls], box=box))
    return out


def labels_dir(images: Path) -> Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`."""
    parts = list(images.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    raise DatasetError(f"{images}: image folder path has no 'images' part to find its labels")


def read_split(root: Path, split: str = "train") -> list[Sample]:
    """Every image of `split` with its boxes, in file-name order.

    Raises:
        DatasetError: no data.yaml, no names, no such split folder, no images, a bad label.
    """
    from PIL import Image

    names, data = read_names(root)
    images = _image_dir(root, data, split)
    if not images.is_dir():
        raise DatasetError(f"{images}: the '{split}' image folder does not exist")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{images}: no images")
    labels = labels_dir(images)
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                size = (int(im.width), int(im.height))
        except OSError as err:
            raise DatasetError(f"{f}: unreadable image: {err}") from None
        objects = read_labels(labels / f"{f.stem}.txt", names, size)
        out.append(Sample(image=f, size=size, objects=tuple(objects)))
    return out
