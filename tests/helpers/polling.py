"""Polling a condition until it holds: the one helper every test that waits uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll(pred: Callable[[], Any], timeout: float, every: float = 0.02) -> Any:
    """Call `pred` every `every` s until it returns something truthy or `timeout` s pass.

    Returns its last value; `pred` is always called at least once, and once more at the end.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def wait_until(pred: Callable[[], Any], timeout: float, every: float = 0.01) -> bool:
    """Whether `pred` held within `timeout` s (for tests that assert on it themselves)."""
    return bool(poll(pred, timeout, every))


def wait_for(
    pred: Callable[[], Any],
    timeout: float = 20.0,
    what: str = "",
    *,
    every: float = 0.02,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll `pred` until it returns something truthy and return that; after `timeout` s fail
    the test naming `what`, with `explain()` (the state that did not move) in the message."""
    value = poll(pred, timeout, every)
    if not value:
        detail = "" if explain is None else "\n" + explain()
        raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}{detail}")
    return value
