"""CPU cost per frame: pure arithmetic with an injected CPU clock, and the real process clock."""

from __future__ import annotations

import threading
import time

import pytest

from agent.health.cpu import CpuPerFrame, cpu_ms_per_frame


def test_cpu_ms_per_frame_divides_and_has_none_without_frames() -> None:
    """0.5 CPU s over 20 frames is 25 ms a frame; no frame inferred gives None, not infinity."""
    assert cpu_ms_per_frame(0.5, 20) == 25.0
    assert cpu_ms_per_frame(0.5, 0) is None


def test_each_sample_covers_only_the_interval_since_the_previous_one() -> None:
    """The meter reports the delta since its last sample, not the total since start."""
    clock = iter([10.0, 10.4, 10.4, 11.0])
    meter = CpuPerFrame(100, cpu_time=lambda: next(clock))
    assert meter.sample(110) == pytest.approx(40.0)  # 0.4 s over 10 frames
    assert meter.sample(110) is None  # nothing inferred meanwhile
    assert meter.sample(140) == pytest.approx(20.0)  # 0.6 s over 30 frames


def test_the_process_clock_counts_the_cpu_of_every_thread() -> None:
    """With the real clock, 0.2 CPU s burnt by another thread over 2 frames is >= 100 ms a
    frame: the engine's and the readers' threads are counted, not only the caller's."""
    meter = CpuPerFrame(0)

    def burn() -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.2:
            pass

    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()
    cost = meter.sample(2)
    assert cost is not None and cost >= 100.0
