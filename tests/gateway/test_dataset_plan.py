"""Pure rules of the review and the dataset build: transitions, filters, label edits, class
merge, duplicates, the time-gap split, the gate set and its digest."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import pytest

from agent.gateway.dataset_plan import BuildError, Candidate, merge_classes, plan_dataset
from agent.gateway.review import (
    LabelEdit,
    ReviewAction,
    ReviewError,
    ReviewFilter,
    ReviewStatus,
    apply_edit,
    item_id,
    next_status,
    parse_label_text,
)
from agent.util.dataset_hash import gate_digest

P, A, R, L = (ReviewStatus.PENDING, ReviewStatus.ACCEPTED, ReviewStatus.REJECTED,
              ReviewStatus.RELABELLED)  # fmt: skip


@pytest.mark.parametrize(
    ("old", "action", "edited", "new"),
    [
        (P, ReviewAction.ACCEPT, False, A),
        (A, ReviewAction.ACCEPT, False, A),  # unchanged
        (R, ReviewAction.ACCEPT, True, L),  # edited labels are accepted as relabelled
        (L, ReviewAction.ACCEPT, True, L),  # unchanged
        (L, ReviewAction.REJECT, True, R),
        (P, ReviewAction.RELABEL, False, L),
        (L, ReviewAction.RELABEL, True, L),  # a second edit
    ],
)
def test_review_transitions(
    old: ReviewStatus, action: ReviewAction, edited: bool, new: ReviewStatus
) -> None:
    """Each action leads to its status; nothing goes back to pending."""
    assert next_status(old, action, edited) is new


def test_bulk_without_a_filter_needs_all() -> None:
    """An empty filter is refused for bulk actions unless `all` is set."""
    with pytest.raises(ReviewError, match="--all"):
        ReviewFilter().check_bulk()
    ReviewFilter(all=True).check_bulk()
    ReviewFilter(camera="cam-a").check_bulk()


@pytest.mark.parametrize("bad", ["../x", "jet/../../etc", "Jet", ""])
def test_filter_refuses_unsafe_ids(bad: str) -> None:
    """Device ids and item ids in a filter follow their rules."""
    with pytest.raises(ValueError):
        ReviewFilter(device=bad)
    with pytest.raises(ValueError):
        ReviewFilter(ids=[bad])


def test_item_id_is_stable_and_hex() -> None:
    """The id depends only on the item's place, and is 16 hex digits."""
    a = item_id("jet-1", "cam-a", "2027-01-15", "x")
    assert (
        a
        == item_id("jet-1", "cam-a", "2027-01-15", "x")
        != item_id("jet-1", "cam-a", "2027-01-15", "y")
    )
    assert len(a) == 16 and int(a, 16) >= 0


def test_label_edit_by_index_and_delete() -> None:
    """Class changes by box index (name or id), deletions, bad indices refused."""
    lines = parse_label_text("0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n0 0.7 0.7 0.1 0.1\n")
    edited = apply_edit(lines, LabelEdit(boxes={0: "car", 2: "1"}, delete=[1]), ["person", "car"])
    assert [ln.text() for ln in edited] == ["1 0.5 0.5 0.1 0.1", "1 0.7 0.7 0.1 0.1"]
    with pytest.raises(ValueError, match="box 3"):
        apply_edit(lines, LabelEdit(delete=[3]), ["person", "car"])
    with pytest.raises(ValueError, match="unknown class 'dog'"):
        apply_edit(lines, LabelEdit(boxes={0: "dog"}), ["person", "car"])


def test_class_maps_merge_by_name_and_conflicts_name_both_sides() -> None:
    """Fixed maps agree id by id; new names are appended; a clash names both maps."""
    merged = merge_classes([("gate", ["person", "car"]), ("base", ["person"])], [["dog", "car"]])
    assert merged == ["person", "car", "dog"]
    with pytest.raises(BuildError, match="class 0 is 'person' in gate but 'car' in base"):
        merge_classes([("gate", ["person", "car"]), ("base", ["car", "person"])], [])
    with pytest.raises(BuildError, match="base names car twice"):
        merge_classes([("gate", ["person", "car"]), ("base", ["person", "car", "car"])], [])


def _frames(n: int, seed: int) -> list[Candidate]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(n):
        t += rng.choice([0.5, 2.0, 30.0])
        cam = rng.choice(["a", "b"])
        thumb = bytes(rng.randrange(256) for _ in range(16))
        out.append(Candidate(
            key=f"intake/d/{cam}/day/{i}", group=f"intake/d/{cam}", time=t, base_split=None,
            class_names=("person",), classes=(0,), sha256=hashlib.sha256(thumb).hexdigest(),
            thumb=thumb,
        ))  # fmt: skip
    return out


@pytest.mark.parametrize("seed", range(5))
def test_split_never_puts_close_frames_of_a_camera_on_both_sides(seed: int) -> None:
    """Train and val frames of one camera are always more than the gap apart, and the gate's
    neighbours are never in train or val."""
    cands = _frames(60, seed)
    gate = {cands[10].key}
    plan = plan_dataset(cands, gate, [], gap_s=5.0, val_fraction=0.3, min_change=1.0, grow_gate=3)
    placed = {**plan.split, **{k: "gate" for k in [*gate, *plan.new_gate]}}
    by_key = {c.key: c for c in cands}
    for k1, s1 in placed.items():
        for k2, s2 in placed.items():
            a, b = by_key[k1], by_key[k2]
            if s1 != s2 and a.group == b.group:
                assert abs(a.time - b.time) > 5.0, (k1, s1, k2, s2)
    assert len(plan.new_gate) == 3 and not gate & set(plan.split)


def test_duplicates_dropped_and_gate_growth_needs_enough_images() -> None:
    """A byte copy and a near-identical thumbnail are dropped; asking for a bigger gate than
    there are images is an error, not a silent shortfall."""
    base = _frames(3, 1)
    c = base[0]
    copy = replace(c, key=c.key + "-copy", time=c.time + 100)
    near = replace(c, key=c.key + "-near", sha256="0" * 64, time=c.time + 0.1)  # same thumbnail
    plan = plan_dataset([*base, copy, near], set(), [], gap_s=1, val_fraction=0.2, min_change=1.0)
    assert plan.dropped["exact_duplicate"] == 1 and plan.dropped["near_duplicate"] == 1
    with pytest.raises(BuildError, match="only"):
        plan_dataset(base, set(), [], gap_s=1, val_fraction=0.2, min_change=1.0, grow_gate=10)


def test_gate_digest_covers_paths_and_contents() -> None:
    """The gate digest changes with any file's bytes or name, not with the listing order."""
    a, b = "a" * 64, "b" * 64
    d = gate_digest({"images/1.jpg": a, "labels/1.txt": b})
    assert d == gate_digest({"labels/1.txt": b, "images/1.jpg": a})
    assert d != gate_digest({"images/2.jpg": a, "labels/1.txt": b})
    assert d != gate_digest({"images/1.jpg": b, "labels/1.txt": b})
    expected = hashlib.sha256(f"{a}  images/1.jpg\n{b}  labels/1.txt\n".encode()).hexdigest()
    assert d == expected
    with pytest.raises(ValueError):
        gate_digest({"../x": a})
