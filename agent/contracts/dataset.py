"""What a built dataset says about itself: `dataset.json` and the gate set's `gate.json`.

Written by `edge-gateway dataset build`, read by `edge-agent train` / `eval` and by
`edge-gateway models sign --gate-data`. The gate set's digest is defined in
`agent.util.dataset_hash.gate_digest` (re-exported here).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.util.dataset_hash import GATE_MANIFEST, gate_digest, gate_set_sha256
from agent.util.models import StrictModel

DATASET_SCHEMA = "edge.dataset/1"
GATE_SCHEMA = "edge.gate/1"
DATASET_MANIFEST = "dataset.json"
GATE_DIR = "gate"
SPLITS = ("train", "val", "gate")

__all__ = [
    "DATASET_MANIFEST",
    "GATE_DIR",
    "GATE_MANIFEST",
    "DatasetManifest",
    "DatasetSource",
    "GateItem",
    "GateManifest",
    "SplitStats",
    "gate_digest",
    "gate_set_sha256",
]


class SplitStats(StrictModel):
    """One split of a dataset: how many images, and boxes per class name."""

    images: int = Field(ge=0)
    """Images in the split."""
    boxes: dict[str, int]
    """Boxes per class name (classes with none omitted)."""


class DatasetSource(StrictModel):
    """Where images came from."""

    kind: Literal["intake", "base"]
    """Reviewed intake items or a base dataset."""
    ref: str
    """intake: the filters used; base: the base folder's path."""
    items: int = Field(ge=0)
    """Images this source contributed (all splits)."""


class GateItem(StrictModel):
    """One image of the gate set."""

    source: str
    """Stable source key, e.g. 'intake/<dev>/<cam>/<day>/<stem>'."""
    image: str
    """Path of the image, relative to the gate folder."""
    label: str
    """Path of the YOLO label file, relative to the gate folder."""
    added_in: int = Field(ge=1)
    """Gate version that added the image."""


class GateManifest(StrictModel):
    """`gate/gate.json`: the fixed held-out split; it only grows, by explicit choice."""

    schema_: Literal["edge.gate/1"] = Field(GATE_SCHEMA, alias="schema")
    """Format of this file."""
    version: int = Field(ge=0)
    """Bumped each time the gate set grows."""
    classes: list[str]
    """Class names by YOLO id of the gate's labels."""
    sha256: str
    """gate_digest of the folder's files (not this one)."""
    items: list[GateItem]
    """Every gate image, in the order added."""


class DatasetManifest(StrictModel):
    """`dataset.json`: version, sources, per-class box counts per split, every file's sha256."""

    schema_: Literal["edge.dataset/1"] = Field(DATASET_SCHEMA, alias="schema")
    """Format of this file."""
    name: str
    """Dataset name given to `dataset build`."""
    version: int = Field(ge=1)
    """1 for the first build into a folder, then +1."""
    created: str
    """UTC time of the build, RFC 3339."""
    classes: list[str]
    """Class names by YOLO id (data.yaml `names`)."""
    sources: list[DatasetSource]
    """What the images came from."""
    splits: dict[str, SplitStats]
    """train, val and gate statistics."""
    dropped: dict[str, int]
    """Images left out, by reason."""
    settings: dict[str, float | int | str]
    """gap_s, min_change, val_fraction used."""
    gate_sha256: str
    """The gate set's digest (gate.json `sha256`)."""
    files: dict[str, str]
    """sha256 of every file of the dataset (gate included), by relative path."""
