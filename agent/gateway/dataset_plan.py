"""Pure decisions of `edge-gateway dataset build`: class map merge, duplicates, split, gate.

No file or database access here: the builder (`agent.gateway.dataset_build`) reads the
sources into `Candidate`s and writes what `plan_dataset` decides.

- Classes are merged by name. Fixed maps (the previous build of the same folder, the gate set,
  the base dataset) keep their ids and must agree id by id; a disagreement is a
  `BuildError` naming both sides. Names used by boxes of other sources are appended in order of
  first appearance.
- Exact duplicates (same image sha256) keep the first; intake frames of one camera, in time
  order, go through the labeller's near-duplicate rule (`agent.util.near_duplicate`).
- Intake frames of one camera are cut into time blocks of `BLOCK_GAPS` x `gap_s` (absolute
  time, so a block keeps its split as data grows); each block goes to train or val by a stable
  hash (with two or more blocks at least one on each side; a single block is train). A base
  dataset keeps its own split.
- The gate set only grows when asked (`grow_gate` > 0): frames of units (intake blocks, base
  *val* images) in stable hash order. Gate frames stay in the gate for good.
- Then the gap rule: of two frames of one camera closer than `gap_s` with different splits, the
  lower-ranked one (gate > val > train) is dropped. So no frame within `gap_s` of another ends
  up on the other side, and a gate frame's neighbours never reach train or val.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.util.near_duplicate import NearDuplicateFilter


class BuildError(Exception):
    """Bad input for a dataset build; the message is meant for the user."""


@dataclass(frozen=True)
class Candidate:
    """One image that may go into the dataset.

    Attributes:
        key: stable source key ('intake/<dev>/<cam>/<day>/<stem>' or 'base/<split>/<stem>').
        group: frames that may be near-duplicates or neighbours ('intake/<dev>/<cam>'); base
            images are their own group.
        time: capture time in seconds (intake), or 0.0 (base).
        base_split: 'train' or 'val' for a base image, None for intake.
        class_names: the source's class map by id.
        classes: class id of each box (indices into `class_names`).
        sha256: the image bytes' digest.
        thumb: grey thumbnail bytes for the near-duplicate rule (None: not checked).
    """

    key: str
    group: str
    time: float
    base_split: str | None
    class_names: tuple[str, ...]
    classes: tuple[int, ...]
    sha256: str
    thumb: bytes | None = None


@dataclass
class Plan:
    """What the build writes: split per kept key, gate additions, merged classes, drops."""

    classes: list[str]
    split: dict[str, str] = field(default_factory=dict)  # key -> 'train' | 'val'
    new_gate: list[str] = field(default_factory=list)  # keys added to the gate, in order
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def merge_classes(
    fixed: Sequence[tuple[str, Sequence[str]]], used: Sequence[Sequence[str]]
) -> list[str]:
    """The merged class list: fixed maps (`(who, names)`) agree id by id, then new used names.

    Raises:
        BuildError: a name twice in one map, or two maps naming one id differently.
    """
    merged: list[str] = []
    owner: list[str] = []
    for who, names in fixed:
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if list(names).count(n) > 1})
            raise BuildError(f"class map of {who} names {', '.join(dup)} twice")
        for i, name in enumerate(names):
            if i < len(merged) and merged[i] != name:
                raise BuildError(
                    f"class map conflict: class {i} is {merged[i]!r} in {owner[i]} but "
                    f"{name!r} in {who}"
                )
            if i >= len(merged):  # not in merged: it would clash at an id above, or twice here
                merged.append(name)
                owner.append(who)
    for names in used:
        for name in names:
            if name not in merged:
                merged.append(name)
    return merged


def used_names(c: Candidate) -> list[str]:
    """Class names the boxes of `c` use (BuildError for an id outside its class map)."""
    out = []
    for cid in c.classes:
        if cid >= len(c.class_names):
            raise BuildError(
                f"{c.key}: box class {cid} is not in its class map "
                f"({len(c.class_names)} names; an intake item needs class_names in its sidecar)"
            )
        out.append(c.class_names[cid])
    return out


def _bucket(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % 10_000


def drop_duplicates(
    cands: Sequence[Candidate], min_change: float, plan: Plan, protected: set[str]
) -> list[Candidate]:
    """`cands` without exact duplicates and without intake near-duplicates (counted in plan).

    `protected` keys (the gate's) are always kept and win over their duplicates.
    """
    seen = {c.sha256 for c in cands if c.key in protected}
    filters: dict[str, NearDuplicateFilter] = {}
    kept = []
    for c in sorted(cands, key=lambda c: (c.group, c.time, c.key)):
        if c.key in protected:
            kept.append(c)
            if c.thumb is not None:
                filters.setdefault(c.group, NearDuplicateFilter(min_change)).remember(c.thumb)
            continue
        if c.sha256 in seen:
            plan.dropped["exact_duplicate"] += 1
            continue
        seen.add(c.sha256)
        if c.thumb is not None and c.base_split is None:
            f = filters.setdefault(c.group, NearDuplicateFilter(min_change))
            if not f.offer(c.thumb):
                plan.dropped["near_duplicate"] += 1
                continue
        kept.append(c)
    return kept


BLOCK_GAPS = 10
"""Intake frames are split in time blocks of BLOCK_GAPS x the gap (at least 1 s)."""

RANK = {"gate": 2, "val": 1, "train": 0}
"""Of two frames closer than the gap with different splits, the lower rank is dropped."""


def blocks(cands: Sequence[Candidate], gap_s: float) -> dict[tuple[str, int], list[Candidate]]:
    """Units of assignment: (camera group, time block) for intake frames, in time order; each
    base image is its own unit (block 0 of its own group)."""
    size = max(BLOCK_GAPS * gap_s, 1.0)
    out: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for c in sorted(cands, key=lambda c: (c.group, c.time, c.key)):
        out[(c.group, 0 if c.base_split is not None else int(c.time // size))].append(c)
    return out


def _unit_order(unit: tuple[str, int]) -> tuple[int, str, int]:
    return (_bucket(f"{unit[0]}#{unit[1]}"), unit[0], unit[1])


def _grow(
    units: dict[tuple[str, int], list[Candidate]], label: dict[str, str], n: int
) -> list[str]:
    """Gate additions: frames of eligible units (intake blocks, base val images) in stable hash
    order, earliest first within a unit, until `n`."""
    picked: list[str] = []
    for unit in sorted(units, key=_unit_order):
        for c in units[unit]:
            if len(picked) >= n:
                return picked
            if c.base_split in (None, "val") and label.get(c.key) != "gate":
                picked.append(c.key)
    return picked


def _block_splits(
    units: dict[tuple[str, int], list[Candidate]], val_fraction: float
) -> set[tuple[str, int]]:
    """The intake units that go to val: by hash, but with two or more intake blocks at least
    one on each side; a single block stays in train (val would take all the intake)."""
    intake = sorted(
        (u for u, frames in units.items() if frames[0].base_split is None), key=_unit_order
    )
    if val_fraction == 0 or len(intake) < 2:
        return set()
    val = {u for u in intake if _bucket(f"{u[0]}#{u[1]}") < val_fraction * 10_000}
    if not val:
        val = {intake[0]}
    if len(val) == len(intake):
        val.discard(intake[-1])
    return val


def enforce_gap(frames: Sequence[Candidate], label: dict[str, str], gap_s: float) -> dict[str, str]:
    """Frames (one group, time order) to drop: of two frames closer than `gap_s` with different
    splits, the lower-ranked one (gate > val > train); key -> the reason."""
    drop: dict[str, str] = {}
    start = 0
    for i, c in enumerate(frames):
        while frames[start].time < c.time - gap_s:
            start += 1
        for other in frames[start:i]:
            a, b = label[other.key], label[c.key]
            if a == b:
                continue
            low, high = (other, b) if RANK[a] < RANK[b] else (c, a)
            drop.setdefault(low.key, "gate_neighbour" if high == "gate" else "gap")
    return drop


def plan_dataset(
    cands: Sequence[Candidate],
    gate_keys: set[str],
    fixed_classes: Sequence[tuple[str, Sequence[str]]],
    *,
    gap_s: float,
    val_fraction: float,
    min_change: float,
    grow_gate: int = 0,
) -> Plan:
    """Decide every candidate's fate (see the module docstring).

    Raises:
        BuildError: class map conflicts, boxes outside their class map, bad settings, fewer
            eligible images than `grow_gate`.
    """
    if gap_s < 0 or not 0 <= val_fraction < 1 or grow_gate < 0:
        raise BuildError("gap must be >= 0, val fraction in [0, 1), grow-gate >= 0")
    plan = Plan(classes=merge_classes(fixed_classes, [used_names(c) for c in cands]))
    kept = drop_duplicates(cands, min_change, plan, gate_keys)
    units = blocks(kept, gap_s)
    val = _block_splits(units, val_fraction)
    label = {
        c.key: "gate" if c.key in gate_keys else c.base_split or ("val" if u in val else "train")
        for u, frames in units.items()
        for c in frames
    }
    if grow_gate:
        plan.new_gate = _grow(units, label, grow_gate)
        if len(plan.new_gate) < grow_gate:
            raise BuildError(
                f"--grow-gate {grow_gate}: only {len(plan.new_gate)} eligible images (accepted "
                "intake items or base val images not yet in the gate)"
            )
        label.update({k: "gate" for k in plan.new_gate})
    by_group: dict[str, list[Candidate]] = defaultdict(list)
    for frames in units.values():
        by_group[frames[0].group].extend(frames)
    drop: dict[str, str] = {}
    for frames in by_group.values():
        drop.update(enforce_gap(sorted(frames, key=lambda c: (c.time, c.key)), label, gap_s))
    for reason in drop.values():
        plan.dropped[reason] += 1
    plan.split = {k: v for k, v in label.items() if v != "gate" and k not in drop}
    plan.dropped = dict(plan.dropped)  # type: ignore[assignment]
    return plan
