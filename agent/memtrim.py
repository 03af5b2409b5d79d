"""Give freed heap memory back to the OS after a large release (a model closed).

Loading a model on the OTA thread and closing the old one leaves its freed memory in glibc's
per-thread malloc arenas, which are not returned to the OS on their own: RSS then grows with
every swap (measured: +30 % over 20 swaps of the demo model; with a trim after each close,
+4.8 %, within noise; docs/benchmarks.md, "Memory soak"). `malloc_trim(0)` walks every arena
and releases the free pages. It runs in C without the GIL, so the inference loop goes on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from functools import cache

import structlog

log = structlog.get_logger(__name__)


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def trim_heap() -> bool:
    """Return free heap pages to the OS; False where the C library has no `malloc_trim`."""
    fn = _malloc_trim()
    if fn is None:
        return False
    t0 = time.perf_counter()
    fn(0)
    log.debug("heap trimmed", ms=round((time.perf_counter() - t0) * 1e3, 2))
    return True
