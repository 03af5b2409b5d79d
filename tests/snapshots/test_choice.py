"""The pure best-frame rules: cut by the edge, better, due, crop rectangle, eviction plan."""

from __future__ import annotations

import pytest

from agent.snapshots.choice import Candidate, better, due, is_cut, padded_crop, plan_eviction


@pytest.mark.parametrize(
    ("box", "cut"),
    [
        ((100, 100, 200, 300), False),  # well inside
        ((0, 100, 50, 300), True),  # touches the left edge
        ((1.5, 100, 50, 300), True),  # within the 2 px margin
        ((700, 100, 767, 300), True),  # within the margin of the right edge (w=768)
        ((100, 100, 200, 576), True),  # bottom edge (h=576)
        ((3, 3, 765, 573), False),  # just inside every margin
    ],
)
def test_is_cut(box: tuple[float, float, float, float], cut: bool) -> None:
    """A box within `margin` px of any frame edge is cut."""
    assert is_cut(box, 768, 576, 2) is cut


@pytest.mark.parametrize(
    ("new", "old", "wins"),
    [
        (Candidate(1, (0, 0, 1, 1), 0.5, False), None, True),  # the first frame always wins
        (Candidate(2, (0, 0, 1, 1), 0.6, False), Candidate(1, (0, 0, 1, 1), 0.5, False), True),
        (Candidate(2, (0, 0, 1, 1), 0.5, False), Candidate(1, (0, 0, 1, 1), 0.5, False), False),
        # an uncut frame beats a cut one whatever the scores, and never the other way round
        (Candidate(2, (0, 0, 1, 1), 0.3, False), Candidate(1, (0, 0, 1, 1), 0.9, True), True),
        (Candidate(2, (0, 0, 1, 1), 0.99, True), Candidate(1, (0, 0, 1, 1), 0.3, False), False),
        (Candidate(2, (0, 0, 1, 1), 0.7, True), Candidate(1, (0, 0, 1, 1), 0.6, True), True),
    ],
)
def test_better(new: Candidate, old: Candidate | None, wins: bool) -> None:
    """Uncut first, then the higher score; a tie keeps the earlier frame."""
    assert better(new, old) is wins


def test_due_rate_limit() -> None:
    """A better frame is written at once the first time, then at most every interval."""
    assert due(None, 100.0, 5.0)
    assert not due(100.0, 104.9, 5.0)
    assert due(100.0, 105.0, 5.0)


def test_padded_crop_is_clipped_and_never_empty() -> None:
    """The crop grows by the padding, stays in the frame, and has at least one pixel."""
    assert padded_crop((100, 100, 200, 300), 768, 576, 0.1) == (90, 80, 210, 320)
    assert padded_crop((0, 0, 768, 576), 768, 576, 0.5) == (0, 0, 768, 576)
    x1, y1, x2, y2 = padded_crop((767.9, 575.9, 768, 576), 768, 576, 0)
    assert x2 > x1 and y2 > y1 and x2 <= 768 and y2 <= 576


def test_plan_eviction_oldest_first_and_keeps_the_new_one() -> None:
    """Oldest entries go until the rest fits; the protected one is never chosen."""
    entries = [("a", 40), ("b", 40), ("c", 40)]
    assert plan_eviction(entries, 100, keep={"c"}) == ["a"]
    assert plan_eviction(entries, 40, keep={"c"}) == ["a", "b"]
    assert plan_eviction(entries, 120, keep=set()) == []
    assert plan_eviction([("big", 500)], 100, keep={"big"}) == []
