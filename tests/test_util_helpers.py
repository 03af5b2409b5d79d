"""The shared helpers of `agent.util` that several packages lean on (pure, fast)."""

from __future__ import annotations

import threading
import time
from enum import Enum

import pytest

from agent.util.durations import short_duration
from agent.util.errors import ReasonError, Refused
from agent.util.labels import class_names, parse_box_line
from agent.util.transitions import transition_table
from agent.util.worker import Worker


class Light(str, Enum):
    RED = "red"
    GREEN = "green"
    AMBER = "amber"


def test_transition_table_needs_a_row_per_state() -> None:
    """A state without its row is refused at build time; rows become frozensets."""
    with pytest.raises(ValueError, match="Light: no transitions row for amber"):
        transition_table({Light.RED: {Light.GREEN}, Light.GREEN: {Light.RED}})
    table = transition_table(
        {Light.RED: {Light.GREEN}, Light.GREEN: {Light.AMBER}, Light.AMBER: ()}
    )
    assert table == {
        Light.RED: frozenset({Light.GREEN}),
        Light.GREEN: frozenset({Light.AMBER}),
        Light.AMBER: frozenset(),
    }


def test_worker_wakes_early_and_stops() -> None:
    """`wake` ends a long rest at once; `stop` ends the loop and joins it."""
    rounds: list[float] = []
    worker: Worker

    def loop() -> None:
        while not worker.rest(30.0):
            rounds.append(time.monotonic())

    worker = Worker("test-worker", loop)
    worker.start()
    t0 = time.monotonic()
    worker.wake()
    deadline = t0 + 5.0
    while not rounds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rounds and rounds[0] - t0 < 5.0
    assert worker.stop(5.0) is True
    assert worker.stopping
    assert not any(t.name == "test-worker" for t in threading.enumerate())


def test_worker_stop_before_start() -> None:
    assert Worker("never", lambda: None).stop(0.1) is True


def test_parse_box_line() -> None:
    assert parse_box_line("2 0.5 0.25 0.1 0.2") == (2, 0.5, 0.25, 0.1, 0.2)
    with pytest.raises(ValueError, match="expected 5 fields"):
        parse_box_line("2 0.5 0.25 0.1")
    with pytest.raises(ValueError, match="not numbers"):
        parse_box_line("car 0.5 0.25 0.1 0.2")


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"names": ["a", "b"]}, {0: "a", 1: "b"}),
        ({"names": {"1": "b", 0: "a"}}, {0: "a", 1: "b"}),
    ],
)
def test_class_names(data: object, names: dict[int, str]) -> None:
    assert class_names(data) == names


@pytest.mark.parametrize("data", [None, [], {"names": []}, {"names": {}}, {"nc": 2}])
def test_class_names_missing(data: object) -> None:
    with pytest.raises(ValueError, match="no class names"):
        class_names(data)


def test_short_duration() -> None:
    assert [short_duration(s) for s in (-3, 59.4, 119, 120, 7199, 7200)] == [
        "0s",
        "59s",
        "119s",
        "2m",
        "120m",
        "2.0h",
    ]


def test_errors_with_a_reason() -> None:
    """ReasonError leads with the reason's code; Refused's message stands alone."""
    err = ReasonError(Light.RED, "stop")
    assert (str(err), err.reason, err.detail) == ("red: stop", Light.RED, "stop")
    assert str(ReasonError("plain_code", "why")) == "plain_code: why"
    refused = Refused(Light.AMBER, "wait a moment")
    assert (str(refused), refused.reason, refused.message) == (
        "wait a moment",
        Light.AMBER,
        "wait a moment",
    )
