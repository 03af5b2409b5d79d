"""Hot-swap preparation runs below the loop's priority; threads it starts are restored."""

from __future__ import annotations

import os
import threading

from agent.ota.priority import lowered_priority


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_block_lowers_caller_and_restores_threads_it_started() -> None:
    """Inside the block the thread is niced; a thread started inside (an engine pool) is
    put back to the original niceness on leaving, the caller stays lowered."""
    seen: dict[str, int] = {}
    ready, done = threading.Event(), threading.Event()

    def pool_thread() -> None:
        seen["child_tid"] = threading.get_native_id()
        seen["child_inside"] = nice_of(0)
        ready.set()
        done.wait(10)

    def job() -> None:
        me = threading.get_native_id()
        seen["base"] = nice_of(me)
        with lowered_priority(5):
            seen["inside"] = nice_of(me)
            child = threading.Thread(target=pool_thread)
            child.start()
            ready.wait(10)
        seen["child_after"] = nice_of(seen["child_tid"])
        seen["after"] = nice_of(me)
        done.set()
        child.join()

    t = threading.Thread(target=job)
    t.start()
    t.join(20)
    base = seen["base"]
    assert seen["inside"] == seen["child_inside"] == base + 5
    assert seen["child_after"] == base
    assert seen["after"] == base + 5


def test_zero_changes_nothing() -> None:
    """loader_nice 0 leaves the thread's priority alone."""
    me = threading.get_native_id()
    before = nice_of(me)
    with lowered_priority(0):
        assert nice_of(me) == before
    assert nice_of(me) == before
