"""What `edge-agent train` is asked to do, checked before anything heavy is imported."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from agent.contracts.ids import SafeId
from agent.util.models import FrozenModel


class TrainRequest(FrozenModel):
    """One training run: dataset, starting weights, schedule, and the model it produces."""

    data_yaml: Path
    """The dataset's data.yaml (Ultralytics layout)."""
    base: str
    """Starting weights (.pt) or an architecture (.yaml)."""
    out: Path
    """Output folder: model.onnx, model.pt, manifest, report."""
    epochs: int = Field(ge=1)
    imgsz: int = Field(ge=32)
    """Square training and export size (multiple of 32)."""
    batch: int = Field(ge=1)
    workers: int = Field(ge=0)
    device: str
    """'cpu', a CUDA index such as '0', or 'auto'."""
    lr0: float | None = Field(None, gt=0)
    seed: int = 0
    name: SafeId
    """Model name in the manifest."""
    version: int = Field(ge=1)
    """Model version in the manifest."""
    mosaic: float = Field(1.0, ge=0, le=1)
    """Ultralytics mosaic probability."""
    warmup_epochs: float = Field(3.0, ge=0)
    """Ultralytics warm-up (at least 100 iterations when > 0)."""


def request_problems(req: TrainRequest) -> list[str]:
    """Why the request cannot run (empty: it can); checked before Ultralytics is imported."""
    problems: list[str] = []
    if not req.data_yaml.is_file():
        problems.append(f"dataset: {req.data_yaml} not found (give a folder with data.yaml)")
    base = Path(req.base)
    if base.suffix not in (".pt", ".yaml", ".yml"):
        problems.append(f"--base {req.base}: give a .pt checkpoint or a .yaml architecture")
    elif base.suffix == ".pt" and not base.is_file():
        problems.append(f"--base {req.base}: file not found")
    if req.imgsz % 32:
        problems.append(f"--imgsz {req.imgsz}: must be a multiple of 32 (the model's stride)")
    if req.out.exists() and any(req.out.iterdir()):
        problems.append(f"--out {req.out}: exists and is not empty (nothing is overwritten)")
    return problems


def resolve_data_yaml(dataset: Path) -> Path:
    """DATASET may be the folder or its data.yaml."""
    return dataset / "data.yaml" if dataset.is_dir() else dataset
