"""Review of intake items (pure): statuses, their transitions, item ids, filters, label edits.

Every hard frame in `intake/<device>/<camera>/<day>/<stem>.jpg` is one item with a status:

    pending -> accepted | rejected | relabelled
    accepted -> rejected | relabelled
    rejected -> accepted | relabelled        (an item with edited labels is accepted as
    relabelled -> rejected | relabelled       `relabelled`, never back to plain `accepted`)

No action leads back to `pending`. Accepting an accepted (or relabelled) item, or rejecting a
rejected one, changes nothing and is reported as unchanged. The item id is the first 16 hex
digits of sha256("<device>/<camera>/<day>/<stem>"): stable across re-indexing, and only ever
looked up in the database, never turned into a path. The storage is `agent.gateway.review_store`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

from pydantic import Field, field_validator

from agent.contracts.ids import check_id
from agent.util.errors import Refused
from agent.util.models import StrictModel
from agent.util.transitions import check_transition, transition_table

ITEM_ID_RE = re.compile(r"^[0-9a-f]{16}$")
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ReviewStatus(str, Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RELABELLED = "relabelled"


class ReviewAction(str, Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    RELABEL = "relabel"


_S = ReviewStatus
TRANSITIONS: dict[ReviewStatus, frozenset[ReviewStatus]] = transition_table(
    {
        _S.PENDING: {_S.ACCEPTED, _S.REJECTED, _S.RELABELLED},
        _S.ACCEPTED: {_S.REJECTED, _S.RELABELLED},
        _S.REJECTED: {_S.ACCEPTED, _S.RELABELLED},
        _S.RELABELLED: {_S.REJECTED, _S.RELABELLED},
    }
)

USABLE = (ReviewStatus.ACCEPTED, ReviewStatus.RELABELLED)
"""Statuses whose items go into a built dataset."""


class ReviewRefusal(str, Enum):
    """Why a review request was refused."""

    BAD_REQUEST = "bad_request"  # bad filter, bad id, bad edit
    NEEDS_ALL = "needs_all"  # a bulk action without any filter, ids or --all
    NOT_FOUND = "not_found"  # an item id that does not exist
    MISSING_FILES = "missing_files"  # the item's files are gone from the intake folder


class ReviewError(Refused[ReviewRefusal]):
    """A review request was refused; `reason` says why, the message in words."""


def next_status(old: ReviewStatus, action: ReviewAction, edited: bool) -> ReviewStatus:
    """The status after `action` on an item in `old` (`edited`: its labels were ever changed).

    Returns `old` itself when the action changes nothing (accept of accepted, reject of
    rejected). Raises IllegalTransitionError for a transition outside TRANSITIONS (a bug).
    """
    if action is ReviewAction.RELABEL:
        new = ReviewStatus.RELABELLED
    elif action is ReviewAction.REJECT:
        new = ReviewStatus.REJECTED
    else:
        new = ReviewStatus.RELABELLED if edited else ReviewStatus.ACCEPTED
    if new is old and new is not ReviewStatus.RELABELLED:
        return old
    if action is ReviewAction.ACCEPT and old is ReviewStatus.RELABELLED:
        return old
    return check_transition(TRANSITIONS, "review", old, new)


def item_id(device: str, camera: str, day: str, stem: str) -> str:
    """The stable id of an intake item (see the module docstring)."""
    key = f"{device}/{camera}/{day}/{stem}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def check_item_key(device: str, camera: str, day: str, stem: str) -> None:
    """Raise ValueError unless every part is safe to become one path segment."""
    check_id(device, "device id")
    check_id(camera, "camera id")
    if not DAY_RE.fullmatch(day):
        raise ValueError(f"bad day {day!r}: expected YYYY-MM-DD")
    if ".." in stem or not STEM_RE.fullmatch(stem):
        raise ValueError(f"bad stem {stem!r}")


def check_item_ids(ids: list[str]) -> list[str]:
    """`ids` unchanged when each is a well-formed item id, else ReviewError(bad_request)."""
    bad = [i for i in ids if not isinstance(i, str) or not ITEM_ID_RE.fullmatch(i)]
    if bad:
        raise ReviewError(
            ReviewRefusal.BAD_REQUEST,
            f"bad item id(s) {', '.join(repr(b)[:40] for b in bad[:5])}: 16 hex digits expected",
        )
    return ids


class ReviewFilter(StrictModel):
    """Which items a list or bulk action covers (all given conditions must hold)."""

    device: str | None = None
    """Only this device's items."""
    camera: str | None = None
    """Only this camera's items."""
    day: str | None = None
    """Only items of this UTC day, YYYY-MM-DD."""
    class_name: str | None = Field(None, alias="class")
    """Only items with at least one box of this class."""
    status: ReviewStatus | None = None
    """Only items in this status."""
    ids: list[str] | None = None
    """Only these item ids."""
    all: bool = False
    """Confirm a bulk action on every item (no filter)."""

    @field_validator("device", "camera")
    @classmethod
    def _ids(cls, v: str | None) -> str | None:
        return v if v is None else check_id(v, "id")

    @field_validator("day")
    @classmethod
    def _day(cls, v: str | None) -> str | None:
        if v is not None and not DAY_RE.fullmatch(v):
            raise ValueError(f"bad day {v!r}: expected YYYY-MM-DD")
        return v

    @field_validator("ids")
    @classmethod
    def _item_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            bad = [i for i in v if not ITEM_ID_RE.fullmatch(i)]
            if bad:
                raise ValueError(f"bad item id(s) {bad[:5]}: 16 hex digits expected")
        return v

    def is_empty(self) -> bool:
        """True when no condition narrows the items (status alone does not count for bulk)."""
        return (
            self.device is None
            and self.camera is None
            and self.day is None
            and self.class_name is None
            and self.ids is None
        )

    def check_bulk(self) -> None:
        """A bulk action needs a filter, ids or `all` (ReviewError `needs_all` otherwise)."""
        if self.is_empty() and self.status is None and not self.all:
            raise ReviewError(
                ReviewRefusal.NEEDS_ALL,
                "refusing to act on every item: give a filter (--device, --camera, --day, "
                "--class), --ids, or --all",
            )

    def where(self) -> tuple[str, list[object]]:
        """SQL condition (over `intake_items`) and its arguments."""
        conds: list[str] = []
        args: list[object] = []
        for column, value in (
            ("device", self.device),
            ("camera", self.camera),
            ("day", self.day),
            ("status", None if self.status is None else self.status.value),
        ):
            if value is not None:
                conds.append(f"{column}=?")
                args.append(value)
        if self.class_name is not None:
            conds.append("instr(classes, ?) > 0")
            args.append(f"\n{self.class_name}\n")
        if self.ids is not None:
            conds.append(f"id IN ({','.join('?' * len(self.ids))})" if self.ids else "0")
            args.extend(self.ids)
        return (" AND ".join(conds) or "1"), args


class LabelEdit(StrictModel):
    """A relabel: class changes per box index, boxes to delete (indices of the current file)."""

    boxes: dict[int, str] = Field(default_factory=dict)
    """Box index -> new class (a name of the item's class map, or its id)."""
    delete: list[int] = Field(default_factory=list)
    """Box indices to delete."""

    def is_empty(self) -> bool:
        return not self.boxes and not self.delete


@dataclass(frozen=True)
class LabelLine:
    """One YOLO label line: class id and the normalised numbers (a box's four, or a segment's
    polygon), kept as written."""

    class_id: int
    rest: str

    def text(self) -> str:
        return f"{self.class_id} {self.rest}"

    @property
    def is_segment(self) -> bool:
        """An Ultralytics segment line (polygon) rather than a box."""
        return len(self.rest.split()) > 4


def parse_label_text(text: str, segments: bool = False) -> list[LabelLine]:
    """YOLO label lines (blank lines skipped); ValueError on a line without an integer class.

    With `segments`, Ultralytics segment lines (`class x1 y1 x2 y2 x3 y3 ...`) are accepted
    too (`LabelLine.is_segment`)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        segment = segments and len(parts) >= 7 and len(parts) % 2 == 1
        if (len(parts) != 5 and not segment) or not parts[0].isdigit():
            raise ValueError(
                f"label line {n}: expected 'class cx cy w h'"
                + (" or 'class x1 y1 x2 y2 x3 y3 ...'" if segments else "")
            )
        out.append(LabelLine(int(parts[0]), " ".join(parts[1:])))
    return out


def resolve_class(value: str, class_names: list[str]) -> int:
    """The class id of `value` (a name in `class_names` or an integer id in range)."""
    if value in class_names:
        return class_names.index(value)
    if value.isdigit() and int(value) < max(len(class_names), 1):
        return int(value)
    known = ", ".join(class_names) or "none"
    raise ValueError(f"unknown class {value!r} (this item's classes: {known})")


def apply_edit(lines: list[LabelLine], edit: LabelEdit, class_names: list[str]) -> list[LabelLine]:
    """The label lines after `edit` (indices refer to `lines`); ValueError on a bad index or
    class."""
    for index in [*edit.boxes, *edit.delete]:
        if not 0 <= index < len(lines):
            raise ValueError(f"box {index} does not exist (the item has {len(lines)} boxes)")
    changed = {i: resolve_class(v, class_names) for i, v in edit.boxes.items()}
    drop = set(edit.delete)
    return [
        LabelLine(changed.get(i, line.class_id), line.rest)
        for i, line in enumerate(lines)
        if i not in drop
    ]


def class_set(lines: list[LabelLine], class_names: list[str]) -> str:
    """The item's class names present in `lines`, as '\\nname\\nname\\n' for the filter."""
    names = sorted(
        {
            class_names[ln.class_id] if ln.class_id < len(class_names) else str(ln.class_id)
            for ln in lines
        }
    )
    return "\n" + "".join(f"{n}\n" for n in names) if names else ""
