"""Gate figures: how a model scored on a fixed, held-out gate set, and the pure rule that
refuses a candidate worse than the model it replaces.

`edge-agent eval --json` writes an `EvalReport`; `edge-gateway models sign --gate-against`
reads it (the two programs exchange it, so it lives here), applies `gate_problems` and signs a
`GateRecord` into the manifest (`Manifest.gate`). `models import`, `deploy` and the rollout
view only read the signed figures. Pure pydantic.
"""

from __future__ import annotations

from pydantic import Field

from agent.util.models import FrozenModel

EVAL_SCHEMA = "edge.eval/1"
DEFAULT_MARGIN = 0.01
"""The production margin: a candidate may score at most this much below on overall mAP50-95."""
DEFAULT_CLASS_MARGIN = 0.05
"""Per class (AP50-95), a looser margin: small classes on a small gate set are noisy."""


class Figures(FrozenModel):
    """COCO-style figures of one model on one split (pycocotools, maxDets 100, all areas)."""

    map50: float = Field(ge=0, le=1)
    """mAP at IoU 0.5."""
    map50_95: float = Field(ge=0, le=1)
    """mAP averaged over IoU 0.50:0.95."""
    ap50_95: dict[str, float] = Field(default_factory=dict)
    """Per class name (classes with ground truth only)."""
    ap50: dict[str, float] = Field(default_factory=dict)
    """Per class name, IoU 0.5."""


class ModelRef(FrozenModel):
    """Which model a set of figures belongs to."""

    name: str
    """Model name."""
    version: int
    """Model version (0: a file without a manifest)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the model artifact."""


class ModelFigures(FrozenModel):
    """One evaluated model: what it is, where it was read from, how it scored."""

    path: str
    model: ModelRef
    input_size: tuple[int, int]
    figures: Figures
    seconds: float = Field(ge=0)
    """Wall time of the evaluation of this model."""


class EvalReport(FrozenModel):
    """`edge-agent eval --json`: several models on one split of one dataset."""

    schema_: str = Field(EVAL_SCHEMA, alias="schema")
    data: str
    split: str
    split_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """sha256 of the split's images and labels."""
    images: int = Field(ge=0)
    boxes: int = Field(ge=0)
    evaluator: str
    """Decode settings and the COCO evaluator used."""
    models: list[ModelFigures]


class GateRecord(FrozenModel):
    """What `models sign --gate-against` signs into a manifest (`Manifest.gate`)."""

    gate_set_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Digest of the gate set's files (agent.util.dataset_hash): figures are only compared between
    records with the same one."""
    split: str
    """The split evaluated (`gate`)."""
    images: int = Field(ge=0)
    """Images in the gate set."""
    boxes: int = Field(ge=0)
    """Ground-truth boxes in the gate set."""
    evaluator: str
    """Decode settings and COCO evaluator used."""
    figures: Figures
    """This model's figures on the gate set."""
    replaces: ModelRef | None = None
    """The model it was gated against."""
    replaces_figures: Figures | None = None
    """The replaced model's figures, measured in the same run."""
    margin: float = Field(ge=0)
    """Allowed drop of overall mAP50-95."""
    class_margin: float = Field(ge=0)
    """Allowed drop of a class's AP50-95."""


def gate_problems(
    candidate: Figures, incumbent: Figures, margin: float, class_margin: float
) -> list[str]:
    """Why `candidate` must not replace `incumbent` (empty: it may).

    Overall mAP50-95 may drop by at most `margin`; each class the incumbent has AP for may
    drop by at most `class_margin`, and a class the candidate has no figure for is a problem.
    """
    problems: list[str] = []
    if candidate.map50_95 < incumbent.map50_95 - margin:
        problems.append(
            f"mAP50-95 {candidate.map50_95:.3f} < {incumbent.map50_95:.3f} - margin {margin}"
        )
    for name, before in sorted(incumbent.ap50_95.items()):
        after = candidate.ap50_95.get(name)
        if after is None:
            problems.append(f"class {name}: no AP for the candidate (incumbent {before:.3f})")
        elif after < before - class_margin:
            problems.append(
                f"class {name}: AP50-95 {after:.3f} < {before:.3f} - class margin {class_margin}"
            )
    return problems
