"""The FFmpeg options gate: a hung open blocks nobody who needs the same options."""

from __future__ import annotations

import os
import threading

import pytest

from agent.sources.ffmpeg_options import OptionsBusyError, OptionsGate

VAR = "EDGE_TEST_FFMPEG_OPTIONS"


def hold(gate: OptionsGate, value: str, release: threading.Event) -> threading.Thread:
    """Hold the gate with `value` in a thread (an open that hangs) until `release`; the thread
    is returned so that the test can join it: every test's gate sets the same variable, so a
    holder still restoring it would leak its value into the next test's gate."""
    entered = threading.Event()

    def run() -> None:
        with gate.holding(value, timeout=5):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert entered.wait(5)
    return thread


def test_same_value_opens_while_another_hangs() -> None:
    """An open with the same transport proceeds while a hung one holds the gate."""
    gate, release = OptionsGate(VAR), threading.Event()
    holder = hold(gate, "rtsp_transport;tcp", release)
    with gate.holding("rtsp_transport;tcp", timeout=0.01):
        assert os.environ[VAR] == "rtsp_transport;tcp"
    release.set()
    holder.join(5)


def test_other_value_waits_bounded_then_proceeds() -> None:
    """Another transport waits (bounded) for the opens in flight, then gets its own value."""
    gate, release = OptionsGate(VAR), threading.Event()
    holder = hold(gate, "rtsp_transport;tcp", release)
    with pytest.raises(OptionsBusyError, match="still in progress"):
        with gate.holding("rtsp_transport;udp", timeout=0.05):
            pass
    release.set()
    holder.join(5)
    with gate.holding("rtsp_transport;udp", timeout=5):
        assert os.environ[VAR] == "rtsp_transport;udp"
    assert VAR not in os.environ  # restored once nobody holds it
