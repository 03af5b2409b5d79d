"""Durations for people: one short form (12s, 5m, 3.2h) for the CLI and the web pages."""

from __future__ import annotations


def short_duration(seconds: float) -> str:
    """12s below two minutes, 5m below two hours, 3.2h above; negative counts as 0."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
