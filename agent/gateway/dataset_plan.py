"""Pure decisions of `edge-gateway dataset build`: class map merge, duplicates, split, gate.

No file or database access here: the builder (`agent.gateway.dataset_build`) reads the
sources into `Candidate`s and writes what `plan_dataset` decides.

- Classes are merged by name. Fixed maps (the previous build of the same folder, the gate set,
  the base dataset) keep their ids and must agree id by id; a disagreement is a
  `BuildError` naming both sides. Names used by boxes of other sources are appended in order of
  first appearance.
- Exact duplicates (same image sha256) keep the first; intake frames of one camera, in time
  order, go through the labeller's near-duplicate rule (`agent.util.near_duplicate`).
- Intake frames of one camera are grouped into clusters: consecutive frames at most `gap_s`
  apart share a cluster. A whole cluster goes to train or to val (by a stable hash of its first
  frame), so no two frames within `gap_s` of each other end up on both sides. A base dataset
  keeps its own train/val split.
- The gate set only grows when asked (`grow_gate` > 0): whole units (an intake cluster, or one
  base *val* image) picked in stable hash order. Frames sharing a cluster with a gate frame never
  go to train or val.
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


def clusters(cands: Sequence[Candidate], gap_s: float) -> list[list[Candidate]]:
    """Intake frames grouped per camera: consecutive frames <= `gap_s` apart share a cluster.
    Base images are each their own cluster."""
    out: list[list[Candidate]] = []
    by_group: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        if c.base_split is not None:
            out.append([c])
        else:
            by_group[c.group].append(c)
    for group in sorted(by_group):
        frames = sorted(by_group[group], key=lambda c: (c.time, c.key))
        current = [frames[0]]
        for prev, c in zip(frames, frames[1:], strict=False):
            if c.time - prev.time > gap_s:
                out.append(current)
                current = []
            current.append(c)
        out.append(current)
    return out


def _grow(units: list[list[Candidate]], n: int, plan: Plan) -> set[int]:
    """Pick units for the gate in stable hash order until `n` images; their indices."""
    picked: set[int] = set()
    eligible = [i for i, u in enumerate(units) if u[0].base_split in (None, "val")]
    for i in sorted(eligible, key=lambda i: (_bucket(units[i][0].key), units[i][0].key)):
        if len(plan.new_gate) >= n:
            break
        take = units[i][: n - len(plan.new_gate)]
        plan.new_gate.extend(c.key for c in take)
        plan.dropped["gate_neighbour"] += len(units[i]) - len(take)
        picked.add(i)
    return picked


def _assign(units: list[list[Candidate]], val_fraction: float, plan: Plan) -> None:
    intake = [i for i, u in enumerate(units) if u[0].base_split is None]
    val = {i for i in intake if _bucket(units[i][0].key) < val_fraction * 10_000}
    if val_fraction > 0 and not val and len(intake) >= 2:  # at least one val cluster
        val = {min(intake, key=lambda i: (_bucket(units[i][0].key), units[i][0].key))}
    for i, unit in enumerate(units):
        for c in unit:
            split = c.base_split or ("val" if i in val else "train")
            plan.split[c.key] = split


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
        BuildError: class map conflicts, boxes outside their class map, bad settings.
    """
    if gap_s < 0 or not 0 <= val_fraction < 1 or grow_gate < 0:
        raise BuildError("gap must be >= 0, val fraction in [0, 1), grow-gate >= 0")
    plan = Plan(classes=merge_classes(fixed_classes, [used_names(c) for c in cands]))
    kept = drop_duplicates(cands, min_change, plan, gate_keys)
    units = clusters(kept, gap_s)
    free: list[list[Candidate]] = []
    for unit in units:
        if any(c.key in gate_keys for c in unit):
            plan.dropped["gate_neighbour"] += sum(c.key not in gate_keys for c in unit)
        else:
            free.append(unit)
    picked = _grow(free, grow_gate, plan) if grow_gate else set()
    if grow_gate and len(plan.new_gate) < grow_gate:
        raise BuildError(
            f"--grow-gate {grow_gate}: only {len(plan.new_gate)} eligible images (accepted "
            "intake items or base val images not yet in the gate)"
        )
    _assign([u for i, u in enumerate(free) if i not in picked], val_fraction, plan)
    plan.dropped = dict(plan.dropped)  # type: ignore[assignment]
    return plan
