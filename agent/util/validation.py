"""Pydantic validation errors as one line per problem, the way every CLI and log shows them."""

from __future__ import annotations

from pydantic import ValidationError


def validation_problems(err: ValidationError) -> list[str]:
    """One line per problem: `field.path: message` (`(top level)` for the root)."""
    return [
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()
    ]


def format_validation_error(err: ValidationError) -> str:
    """All problems of `err` on one line, separated by `; `."""
    return "; ".join(validation_problems(err))


def check_min_max(model: object, low: str, high: str) -> None:
    """Raise `ValueError("<high> must be >= <low>")` when `model.<high>` is below `model.<low>`
    (a delay window's bounds, for a model validator)."""
    if getattr(model, high) < getattr(model, low):
        raise ValueError(f"{high} must be >= {low}")
