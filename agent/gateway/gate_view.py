"""Signed gate figures in the rollout view: the model being rolled out next to the one(s) it
replaces, read from the registry's manifests (pure; nothing is evaluated on the gateway).

The figures of a replaced model come from its own signed gate record when it is on the same
gate set, else from the candidate's record (`replaces_figures`, measured at signing on the
same gate set) when that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from agent.contracts.gate import Figures, GateRecord, gate_problems


def _record(manifest: dict[str, Any] | None) -> GateRecord | None:
    if not manifest or not manifest.get("gate"):
        return None
    try:
        return GateRecord.model_validate(manifest["gate"])
    except ValidationError:
        return None


def _figures(f: Figures) -> dict[str, Any]:
    return f.model_dump(mode="json")


def _previous_figures(
    ref: str, record: GateRecord, manifest: dict[str, Any] | None
) -> Figures | None:
    own = _record(manifest)
    if own is not None and own.gate_set_sha256 == record.gate_set_sha256:
        return own.figures
    rep = record.replaces
    if rep is not None and f"{rep.name}@{rep.version}" == ref:
        return record.replaces_figures
    return None


def rollout_gate(
    target: dict[str, Any] | None,
    previous: Iterable[str],
    manifest_of: Callable[[str], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """The `gate` member of a rollout view: None when the target has no signed figures.

    `previous` are the 'name@version' the devices ran before; `manifest_of` looks one up.
    """
    record = _record(target)
    if record is None:
        return None
    replaces: dict[str, Any] = {}
    problems: list[str] = []
    for ref in sorted(set(previous)):
        figures = _previous_figures(ref, record, manifest_of(ref))
        replaces[ref] = None if figures is None else _figures(figures)
        if figures is not None:
            found = gate_problems(record.figures, figures, record.margin, record.class_margin)
            problems += [f"vs {ref}: {p}" for p in found]
    return {
        "gate_set_sha256": record.gate_set_sha256,
        "images": record.images,
        "boxes": record.boxes,
        "figures": _figures(record.figures),
        "replaces": replaces,
        "problems": problems,
    }


def gate_lines(gate: dict[str, Any] | None, target: str) -> list[str]:
    """Terminal lines of a rollout view's `gate` member."""
    if gate is None:
        return [f"  gate: {target} has no signed gate figures"]

    def fmt(f: dict[str, Any] | None) -> str:
        if f is None:
            return "no figures on this gate set"
        per = ", ".join(f"{k} {v:.3f}" for k, v in f["ap50_95"].items())
        return f"mAP50-95 {f['map50_95']:.3f}, mAP50 {f['map50']:.3f} ({per})"

    lines = [
        f"  gate set {gate['gate_set_sha256'][:12]} ({gate['images']} images, {gate['boxes']} "
        f"boxes): {target} {fmt(gate['figures'])}"
    ]
    lines += [f"    replaces {ref}: {fmt(f)}" for ref, f in gate["replaces"].items()]
    lines += [f"    WORSE {p}" for p in gate["problems"]]
    return lines
