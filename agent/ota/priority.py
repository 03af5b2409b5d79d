"""Run a hot swap's preparation (load, warm-up, validation) below the inference loop's priority.

Loading and validating a model beside the running one competes with the inference loop for the
CPU; on a busy 2-core device that stretches the frames around the swap. The OTA job thread
therefore raises its own niceness before it loads (Linux: niceness is per thread). Threads the
engine creates meanwhile (an ONNX Runtime intra-op pool when `threads` > 1) inherit it, and
later serve the inference loop; on leaving, their niceness is put back to the loop's. That
needs CAP_SYS_NICE (root); without it a warning says how many threads stay lowered and
`loader_nice=0` avoids the issue.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

TASKS = Path("/proc/self/task")


def _thread_ids() -> set[int]:
    try:
        return {int(p.name) for p in TASKS.iterdir()}
    except OSError:
        return set()


@contextmanager
def lowered_priority(nice: int) -> Iterator[None]:
    """Raise the calling thread's niceness by `nice` (0: do nothing) for the block.

    The calling thread stays lowered afterwards (an unprivileged thread cannot raise its
    priority again); threads created inside the block are restored to the original niceness.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        yield
        return
    me = threading.get_native_id()
    base = os.getpriority(os.PRIO_PROCESS, me)
    before = _thread_ids()
    os.setpriority(os.PRIO_PROCESS, me, min(base + nice, 19))
    try:
        yield
    finally:
        stuck = 0
        for tid in _thread_ids() - before:
            try:
                if os.getpriority(os.PRIO_PROCESS, tid) != base:
                    os.setpriority(os.PRIO_PROCESS, tid, base)
            except ProcessLookupError:
                continue
            except PermissionError:
                stuck += 1
        if stuck:
            log.warning(
                "engine threads created during the swap keep a lowered priority (no "
                "CAP_SYS_NICE); set loader_nice 0 if the engine uses more than one thread",
                threads=stuck,
            )
