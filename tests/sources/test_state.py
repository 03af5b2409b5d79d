"""The camera lifecycle state machine and its backoff (pure; frozen clock, seeded rng)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.sources.state import TRANSITIONS, CameraState, CameraStateMachine
from agent.util.backoff import backoff_delay
from agent.util.transitions import IllegalTransitionError

S = CameraState


class FrozenClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def machine_in(state: CameraState, clock: FrozenClock | None = None) -> CameraStateMachine:
    """A machine driven along legal moves into `state`."""
    sm = CameraStateMachine(0.5, 8.0, jitter=0.0, clock=clock or FrozenClock())
    path = {
        S.CONNECTING: [],
        S.STREAMING: [S.STREAMING],
        S.STALLED: [S.STREAMING, S.STALLED],
        S.BACKOFF: [S.BACKOFF],
        S.STOPPED: [S.STOPPED],
    }[state]
    for step in path:
        sm.transition(step)
    assert sm.state is state
    return sm


LEGAL = [
    (S.CONNECTING, S.STREAMING),  # opened and got a first frame
    (S.CONNECTING, S.BACKOFF),  # open failed
    (S.CONNECTING, S.STOPPED),  # stopped while opening
    (S.STREAMING, S.STALLED),  # frame age passed stall_timeout_s
    (S.STREAMING, S.BACKOFF),  # read failed
    (S.STREAMING, S.STOPPED),  # stopped, or end of a non-looping file
    (S.STALLED, S.STREAMING),  # a frame arrived again
    (S.STALLED, S.BACKOFF),  # read failed or hung read abandoned
    (S.STALLED, S.STOPPED),  # stopped while stalled
    (S.BACKOFF, S.CONNECTING),  # backoff delay over
    (S.BACKOFF, S.STOPPED),  # stopped while waiting
]

ILLEGAL = sorted(
    set(itertools.product(list(S), list(S))) - set(LEGAL), key=lambda p: (p[0].value, p[1].value)
)


def test_transition_table_matches_the_documented_list() -> None:
    """TRANSITIONS allows exactly the documented moves."""
    table = {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts}
    assert table == set(LEGAL)


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=lambda s: s.value)
def test_legal_transition_changes_state(old: CameraState, new: CameraState) -> None:
    """A legal move changes the state and stamps the time it happened."""
    clock = FrozenClock()
    sm = machine_in(old, clock)
    clock.now += 3.0
    sm.transition(new)
    assert sm.state is new
    assert sm.since == clock.now


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transition_raises_and_keeps_state(old: CameraState, new: CameraState) -> None:
    """An illegal move (including self-loops and leaving STOPPED) raises and changes nothing."""
    sm = machine_in(old)
    with pytest.raises(IllegalTransitionError, match=f"{old.value} -> {new.value}"):
        sm.transition(new)
    assert sm.state is old


def test_machine_starts_connecting() -> None:
    """A new camera is connecting."""
    assert CameraStateMachine(0.5, 30.0).state is S.CONNECTING


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (0, 0.5),  # first failure: the minimum
        (1, 1.0),  # doubles
        (2, 2.0),
        (3, 4.0),
        (5, 16.0),
        (6, 30.0),  # 32 capped at max
        (60, 30.0),  # far past the cap
        (5000, 30.0),  # no float overflow
    ],
)
def test_backoff_grows_exponentially_to_the_cap(attempt: int, expected: float) -> None:
    """Without jitter the delay is min * 2**attempt, capped at max."""
    assert backoff_delay(attempt, 0.5, 30.0, 0.0, random.Random(1)) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [0, 3, 10])
def test_jitter_stays_within_bounds(attempt: int) -> None:
    """With jitter j each delay lies in [base * (1 - j), base] and the draws spread out."""
    rng = random.Random(42)
    base = min(30.0, 0.5 * 2**attempt)
    delays = [backoff_delay(attempt, 0.5, 30.0, 0.5, rng) for _ in range(2000)]
    assert min(delays) >= base * 0.5
    assert max(delays) <= base
    assert max(delays) - min(delays) > base * 0.4  # really jittered, not constant


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same delays (tests can pin them)."""
    a = [backoff_delay(2, 0.5, 30.0, 0.5, random.Random(7)) for _ in range(3)]
    b = [backoff_delay(2, 0.5, 30.0, 0.5, random.Random(7)) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize(
    ("attempt", "min_s", "max_s", "jitter"),
    [
        (-1, 0.5, 30.0, 0.5),  # negative attempt
        (0, 0.0, 30.0, 0.5),  # zero minimum
        (0, -1.0, 30.0, 0.5),  # negative minimum
        (0, 5.0, 1.0, 0.5),  # max below min
        (0, 0.5, 30.0, 1.5),  # jitter above 1
        (0, 0.5, 30.0, -0.1),  # negative jitter
    ],
)
def test_backoff_rejects_bad_parameters(
    attempt: int, min_s: float, max_s: float, jitter: float
) -> None:
    """Nonsense backoff parameters raise ValueError instead of producing odd delays."""
    with pytest.raises(ValueError):
        backoff_delay(attempt, min_s, max_s, jitter, random.Random(0))


def test_machine_refuses_bad_backoff_bounds_at_construction() -> None:
    """A machine with max < min fails when built, not at the first failure."""
    with pytest.raises(ValueError):
        CameraStateMachine(10.0, 1.0)


def test_enter_backoff_grows_and_records_error() -> None:
    """Each failure without stable streaming doubles the delay and records the error."""
    sm = CameraStateMachine(0.5, 8.0, jitter=0.0, clock=FrozenClock())
    delays = []
    for i in range(6):
        delays.append(sm.enter_backoff(f"boom {i}"))
        sm.transition(S.CONNECTING)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert sm.last_error == "boom 5"
    assert sm.last_delay == 8.0


def test_stable_streaming_resets_backoff() -> None:
    """Streaming for reset_after_s before a failure starts the backoff from the minimum again."""
    clock = FrozenClock()
    sm = CameraStateMachine(0.5, 8.0, jitter=0.0, reset_after_s=10.0, clock=clock)
    for _ in range(3):
        sm.enter_backoff("down")
        sm.transition(S.CONNECTING)
    sm.transition(S.STREAMING)
    clock.now += 10.0
    assert sm.enter_backoff("down again") == 0.5


def test_short_streaming_does_not_reset_backoff() -> None:
    """A source that flaps (streams briefly, fails) keeps backing off longer."""
    clock = FrozenClock()
    sm = CameraStateMachine(0.5, 8.0, jitter=0.0, reset_after_s=10.0, clock=clock)
    for _ in range(3):
        sm.enter_backoff("down")
        sm.transition(S.CONNECTING)
    sm.transition(S.STREAMING)
    clock.now += 9.0
    assert sm.enter_backoff("down again") == 4.0


def test_last_error_is_kept_after_recovery() -> None:
    """Recovering does not erase why the camera last failed."""
    sm = CameraStateMachine(0.5, 8.0, clock=FrozenClock())
    sm.enter_backoff("video file not found: x.mp4")
    sm.transition(S.CONNECTING)
    sm.transition(S.STREAMING)
    assert sm.last_error == "video file not found: x.mp4"


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    min_s=st.floats(min_value=1e-3, max_value=10.0),
    spread=st.floats(min_value=1.0, max_value=1000.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_backoff_never_exceeds_the_cap_or_goes_negative(
    attempt: int, min_s: float, spread: float, jitter: float, seed: int
) -> None:
    """For any parameters the delay lies in [base * (1 - jitter), base] with base <= max_s."""
    max_s = min_s * spread
    base = min(max_s, min_s * 2.0 ** min(attempt, 64))
    delay = backoff_delay(attempt, min_s, max_s, jitter, random.Random(seed))
    assert 0.0 <= delay <= max_s
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9


@pytest.mark.parametrize(
    ("state", "age", "stalls"),
    [
        (S.STREAMING, 5.1, True),  # newest frame older than the timeout
        (S.STREAMING, 5.0, False),  # exactly the timeout is not a stall yet
        (S.STREAMING, None, False),  # no frame yet
        (S.BACKOFF, 60.0, False),  # only a streaming camera can stall
    ],
)
def test_check_stall(state: CameraState, age: float | None, stalls: bool) -> None:
    """check_stall moves STREAMING to STALLED only when the newest frame is too old."""
    sm = machine_in(state)
    assert sm.check_stall(age, 5.0) is stalls
    assert sm.state is (S.STALLED if stalls else state)
    if stalls:
        assert sm.last_error == "no frame for 5.1 s (stall_timeout_s=5)"
