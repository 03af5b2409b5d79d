"""`edge-agent` for the gateway's end-to-end tests, with one known device bug worked around.

agent/pipeline.py (not owned by the gateway) deadlocks on every model swap: `_apply_pending`
holds the non-reentrant `Pipeline._lock` while `_after_swap` calls `on_model_change`, which
republishes the status, whose provider calls `Pipeline.active_detector()` -> the same lock.
The fix requested from its owner: `self._lock = threading.RLock()` in `Pipeline.__init__`
(or call `_after_swap` after releasing the lock). Until it lands, this launcher makes the lock
reentrant before running the real daemon; everything else is the unmodified `edge-agent run`.
Remove this file and use `python -m agent` once the fix is in.
"""

from __future__ import annotations

import threading

from agent import pipeline


def _patch() -> None:
    original = pipeline.Pipeline.__init__

    def init(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        original(self, *args, **kwargs)
        if not isinstance(self._lock, type(threading.RLock())):
            self._lock = threading.RLock()
            self._swapped = threading.Condition(self._lock)

    pipeline.Pipeline.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    _patch()
    from agent.cli import main

    main()
