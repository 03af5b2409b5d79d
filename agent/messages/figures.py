"""The side-by-side figures table of `edge-agent eval`, the gate of `models sign` and the
gateway's model views (pure text)."""

from __future__ import annotations

from collections.abc import Sequence

from agent.contracts.gate import Figures


def figures_table(columns: Sequence[tuple[str, Figures]]) -> str:
    """Rows mAP50, mAP50-95 and AP50-95 per class; one column per (title, figures)."""
    classes: list[str] = []
    for _title, fig in columns:
        classes += [c for c in fig.ap50_95 if c not in classes]
    rows = [
        ("mAP50", [f.map50 for _t, f in columns]),
        ("mAP50-95", [f.map50_95 for _t, f in columns]),
    ]
    rows += [(f"AP50-95 {c}", [f.ap50_95.get(c) for _t, f in columns]) for c in classes]
    first = max(len(r[0]) for r in rows)
    widths = [max(8, len(t)) for t, _f in columns]
    lines = [
        "  ".join([" " * first, *(t.rjust(w) for (t, _f), w in zip(columns, widths, strict=True))])
    ]
    for label, values in rows:
        cells = ["-" if v is None else f"{v:.3f}" for v in values]
        lines.append(
            "  ".join(
                [label.ljust(first), *(c.rjust(w) for c, w in zip(cells, widths, strict=True))]
            )
        )
    return "\n".join(lines)
