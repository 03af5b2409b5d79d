"""The quality gate of `models sign --gate-against`, on the workstation.

The gateway package never runs a model (tests/test_walls.py): the figures come from
`edge-agent eval --json` run as a child process (same Python, same tree), parsed as the
`EvalReport` contract. The decision is `agent.contracts.gate.gate_problems`; what is signed is
a `GateRecord` inside the manifest. `models import`, `deploy` and the rollout view only read
signed figures (`compare_signed`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pydantic import ValidationError

from agent.contracts.gate import (
    EvalReport,
    Figures,
    GateRecord,
    ModelFigures,
    ModelRef,
    gate_problems,
)
from agent.contracts.manifest import Manifest
from agent.util.files import file_sha256

EVAL_TIMEOUT_S = 3600.0
GATE_SET = frozenset({"split", "images", "boxes", "evaluator"})
"""What a `GateRecord` says of the gate set, named alike in the `EvalReport` it comes from."""


class GateError(Exception):
    """The gate could not be evaluated (not: the candidate was refused)."""


def read_manifest(path: Path) -> Manifest:
    """A plain manifest (engines/demo/manifest.json, `edge-agent train`) or a signed one
    (`models sign`: its `manifest` member). Only read for its identity: not verified here."""
    try:
        data = json.loads(path.read_bytes())
        return Manifest.model_validate(
            data.get("manifest", data) if isinstance(data, dict) else data
        )
    except (OSError, ValueError, ValidationError) as exc:
        first = " ".join(str(exc).splitlines()[:2])
        raise GateError(f"{path}: not a manifest: {first}") from None


def model_beside(manifest_path: Path, manifest: Manifest) -> Path:
    """The model file the manifest describes, found beside it by its sha256."""
    folder = manifest_path.parent
    candidates = sorted(folder.glob("*.onnx")) + sorted(folder.glob("*.engine"))
    for path in candidates:
        if path.stat().st_size == manifest.length and file_sha256(path) == manifest.sha256:
            return path
    raise GateError(
        f"no file beside {manifest_path} has sha256 {manifest.sha256[:12]} "
        f"({manifest.name}@{manifest.version}); pass --gate-against-model FILE"
    )


def run_eval(models: list[Path], gate_data: Path, timeout_s: float = EVAL_TIMEOUT_S) -> EvalReport:
    """`edge-agent eval MODELS --data GATE_DATA --split gate --json` in a child process."""
    cmd = [sys.executable, "-m", "agent", "eval", *map(str, models), "--data", str(gate_data)]
    cmd += ["--split", "gate", "--json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GateError(f"edge-agent eval did not run: {exc}") from None
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise GateError(f"edge-agent eval failed (exit {proc.returncode}): {tail}")
    try:
        return EvalReport.model_validate_json(proc.stdout)
    except ValidationError as exc:
        raise GateError(f"edge-agent eval printed no report: {exc}") from None


def decide(
    report: EvalReport, replaces: Manifest, margin: float, class_margin: float
) -> tuple[GateRecord, list[str]]:
    """The record to sign for models[0] (candidate) against models[1] (the incumbent,
    `replaces`), and the problems that refuse it (empty: it passes)."""
    candidate, incumbent = report.models[0], report.models[1]
    if incumbent.model.sha256 != replaces.sha256:
        raise GateError(
            f"evaluated {incumbent.path}, which is not {replaces.name}@{replaces.version}"
        )
    problems = gate_problems(candidate.figures, incumbent.figures, margin, class_margin)
    record = GateRecord(
        **report.model_dump(include=GATE_SET),
        gate_set_sha256=report.split_sha256,
        figures=candidate.figures,
        replaces=ModelRef.model_validate(replaces, from_attributes=True),
        replaces_figures=incumbent.figures,
        margin=margin,
        class_margin=class_margin,
    )
    return record, problems


def columns(report: EvalReport) -> list[tuple[str, Figures]]:
    """Table columns: the candidate, then the model it would replace."""
    titles = ("candidate", "replaces")
    return [(f"{t} {_ref(m)}", m.figures) for t, m in zip(titles, report.models, strict=False)]


def _ref(m: ModelFigures) -> str:
    return f"{m.model.name}@{m.model.version}"


def compare_signed(candidate: dict, current: dict | None) -> tuple[str, list[str]]:
    """Signed gate figures of two registry manifests (JSON dicts): a one-line summary and
    the problems (worse by the candidate's own margins on the same gate set). Nothing is
    evaluated; figures on different gate sets are shown, not compared."""
    gate = candidate.get("gate")
    if not gate:
        return "no gate figures signed", []
    record = GateRecord.model_validate(gate)
    line = f"gate {record.gate_set_sha256[:12]}: mAP50-95 {record.figures.map50_95:.3f}"
    other = (current or {}).get("gate")
    if current is None or not other:
        return line, []
    theirs = GateRecord.model_validate(other)
    if theirs.gate_set_sha256 != record.gate_set_sha256:
        return (
            line
            + f" (current model's figures are on another gate set {theirs.gate_set_sha256[:12]})",
            [],
        )
    line += f" vs {theirs.figures.map50_95:.3f} now"
    problems = gate_problems(record.figures, theirs.figures, record.margin, record.class_margin)
    return line, problems


def signed_summary(gate: dict) -> str:
    """The signed gate figures of a manifest, in a few lines (models import, deploy)."""
    from agent.messages.figures import figures_table

    record = GateRecord.model_validate(gate)
    cols = [("this model", record.figures)]
    if record.replaces is not None and record.replaces_figures is not None:
        cols.append((f"{record.replaces.name}@{record.replaces.version}", record.replaces_figures))
    return (
        f"gate set sha256 {record.gate_set_sha256[:16]} ({record.images} images, {record.boxes} "
        f"boxes; margin {record.margin}, class margin {record.class_margin}):\n"
        + figures_table(cols)
    )
