"""The dataset on disk: Ultralytics YOLO layout, its identity file, atomic sample writes.

Layout written under the output directory::

    data.yaml            class names and split folders (paths relative to this file)
    edge-label.json      the settings that made the dataset (`DatasetSpec`), for resume
    images/{train,val}/  JPEG images
    labels/{train,val}/  one YOLO .txt per image; written last, so it marks the image done
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import Field, ValidationError

from agent.label.plan import Split
from agent.util.files import atomic_write, is_temp_leftover
from agent.util.models import FrozenModel

SPEC_FILE = "edge-label.json"
DATASET_FILE_MODE = 0o644
"""A dataset is meant to be read by training jobs, not only by its writer."""
DATA_FILE = "data.yaml"


class LabelError(Exception):
    """Bad input or output for the labeller; the message is meant for the user."""


class DatasetSpec(FrozenModel):
    """The settings that define a labelled dataset; a resumed run must match them exactly."""

    source: str
    """Absolute path of the video file or image folder labelled."""
    source_kind: str
    """'video' or 'images'."""
    teacher: str
    """Teacher name from the teacher registry."""
    classes: str
    """Canonical class map, 'teacher_label=class,...'."""
    class_names: list[str] = Field(min_length=1)
    """Dataset class names by YOLO id."""
    min_confidence: float = Field(ge=0, le=1)
    """Teacher score threshold."""
    every: int = Field(ge=1)
    """Video: keep every Nth frame."""
    min_change: float = Field(ge=0)
    """Video: near-duplicate threshold (grey 0..255)."""
    val_fraction: float = Field(ge=0, lt=1)
    """Share of samples held out for val."""
    gap_frames: int = Field(ge=0)
    """Video: frames dropped between train and val."""
    jpeg_quality: int = Field(ge=1, le=100)
    """JPEG quality of written images."""
    task: Literal["detect", "segment"] = "detect"
    """Label kind: YOLO boxes, or Ultralytics segment polygons."""


def _differences(a: DatasetSpec, b: DatasetSpec) -> list[str]:
    da, db = a.model_dump(), b.model_dump()
    return [f"{k}: {da[k]!r} (there) vs {db[k]!r} (now)" for k in da if da[k] != db[k]]


def prepare_output(out: Path, spec: DatasetSpec, resume: bool) -> None:
    """Create the dataset layout in `out`, or check that it can be resumed.

    Raises:
        LabelError: `out` is a file, holds unrelated files, holds a dataset made with other
            settings, or holds this dataset and `resume` is False.
    """
    if out.exists() and not out.is_dir():
        raise LabelError(f"output {out} exists and is not a directory")
    spec_path = out / SPEC_FILE
    if spec_path.exists():
        try:
            existing = DatasetSpec.model_validate_json(spec_path.read_text(encoding="utf-8"))
        except (ValidationError, UnicodeDecodeError) as err:
            raise LabelError(f"output {out} holds an unreadable {SPEC_FILE}: {err}") from err
        if existing != spec:
            diffs = "; ".join(_differences(existing, spec))
            raise LabelError(f"output {out} holds another dataset ({diffs}); choose another --out")
        if not resume:
            raise LabelError(
                f"output {out} already holds this dataset; pass --resume to continue it"
            )
    elif out.exists() and any(out.iterdir()):
        raise LabelError(
            f"output {out} is not empty and holds no {SPEC_FILE} (not a dataset made by "
            "'edge-agent label'); choose an empty or new --out"
        )
    for kind in ("images", "labels"):
        for split in Split:
            folder = out / kind / split.value
            folder.mkdir(parents=True, exist_ok=True)
            for partial in folder.glob(".*"):  # left by a run killed mid-write
                if is_temp_leftover(partial):
                    partial.unlink()
    spec_json = spec.model_dump_json(indent=2) + "\n"
    atomic_write(spec_path, spec_json.encode("utf-8"), DATASET_FILE_MODE)
    data = {
        "train": "images/train",
        "val": "images/val",
        "nc": len(spec.class_names),
        "names": dict(enumerate(spec.class_names)),
    }
    data_yaml = yaml.safe_dump(data, sort_keys=False)
    atomic_write(out / DATA_FILE, data_yaml.encode("utf-8"), DATASET_FILE_MODE)


def label_path(out: Path, split: Split, stem: str) -> Path:
    """Where the label file of sample `stem` goes."""
    return out / "labels" / split.value / f"{stem}.txt"


def image_path(out: Path, split: Split, stem: str) -> Path:
    """Where the image of sample `stem` goes."""
    return out / "images" / split.value / f"{stem}.jpg"


def is_done(out: Path, split: Split, stem: str) -> bool:
    """True when sample `stem` was completely written by an earlier run."""
    return label_path(out, split, stem).is_file() and image_path(out, split, stem).is_file()


def write_sample(
    out: Path,
    split: Split,
    stem: str,
    image: npt.NDArray[np.uint8],
    labels: str,
    jpeg_quality: int,
) -> None:
    """Write one (h, w, 3) uint8 BGR image as JPEG, then its label text; each atomically."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise LabelError(f"could not encode sample {stem} as JPEG")
    atomic_write(image_path(out, split, stem), encoded.tobytes(), DATASET_FILE_MODE)
    atomic_write(label_path(out, split, stem), labels.encode("utf-8"), DATASET_FILE_MODE)
