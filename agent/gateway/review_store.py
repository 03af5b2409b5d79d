"""Review of intake items, stored: the `intake_items` table and the item files it points at.

One `ReviewStore` serves the HTTP API (`agent.gateway.api.review`) and the dataset build.
Items are registered when a device uploads (`register`) and, for files that were in
`intake/<device>/<camera>/<day>/` before this table existed, by `index` when the gateway starts;
both start `pending`. Paths are made only from the four parts of a row, each checked by
`review.check_item_key` when registered, never from a request.

A relabel rewrites `<stem>.txt` (atomically) and keeps the teacher's original in the sidecar
`<stem>.json` under `review.original_labels` (written once, before the first edit, and never
replaced), with every edit appended to `review.edits`. An item uploaded without a sidecar gets
one holding only `review`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from agent.gateway.db import Store, record_of
from agent.gateway.review import (
    LabelEdit,
    LabelLine,
    ReviewAction,
    ReviewError,
    ReviewFilter,
    ReviewRefusal,
    ReviewStatus,
    apply_edit,
    check_item_key,
    class_set,
    item_id,
    next_status,
    parse_label_text,
)
from agent.util.files import atomic_write

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ItemRow:
    """One intake item as stored."""

    id: str
    device: str
    camera: str
    day: str
    stem: str
    status: ReviewStatus
    captured: float
    received: float
    class_names: list[str]
    boxes: int
    edited: bool
    updated: float | None
    updated_by: str | None
    reason: str | None

    @property
    def key(self) -> str:
        """'<device>/<camera>/<day>/<stem>': where the item lives under `intake/`."""
        return f"{self.device}/{self.camera}/{self.day}/{self.stem}"

    def path(self, intake_dir: Path, suffix: str) -> Path:
        """The item's file with `suffix` ('.jpg', '.txt', '.json')."""
        return intake_dir / self.device / self.camera / self.day / f"{self.stem}{suffix}"

    def view(self) -> dict[str, Any]:
        """The JSON form the API returns."""
        return {
            "id": self.id,
            "device": self.device,
            "camera": self.camera,
            "day": self.day,
            "stem": self.stem,
            "status": self.status.value,
            "captured": self.captured,
            "received": self.received,
            "class_names": self.class_names,
            "boxes": self.boxes,
            "edited": self.edited,
            "updated": self.updated,
            "updated_by": self.updated_by,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ActionResult:
    """What a bulk action did."""

    status: ReviewStatus
    changed: list[str]
    unchanged: list[str]

    def view(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
            "ids": self.changed,
        }


def _row(r: sqlite3.Row) -> ItemRow:
    return record_of(
        ItemRow,
        r,
        status=ReviewStatus(r["status"]),
        class_names=json.loads(r["class_names"]),
        edited=bool(r["edited"]),
    )


def capture_time(meta: dict[str, Any], fallback: float) -> float:
    """The capture time of a sidecar (`ts`: RFC 3339 text or epoch seconds), else `fallback`."""
    ts = meta.get("ts")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return float(ts)
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return fallback
    return fallback


def sidecar_class_names(meta: dict[str, Any]) -> list[str]:
    """The sidecar's `class_names` (a list of text), else []."""
    names = meta.get("class_names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return list(names)
    return []


def _load_json(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _lines(data: bytes | None) -> list[LabelLine]:
    try:
        return parse_label_text(data.decode("utf-8")) if data else []
    except (UnicodeDecodeError, ValueError):
        return []


class ReviewStore:
    """The review of intake items over the gateway's `Store` and its `intake/` folder."""

    def __init__(self, store: Store, intake_dir: Path) -> None:
        self.store = store
        self.intake_dir = intake_dir
        self._files = threading.Lock()  # one relabel at a time writes item files

    # -- registering ----------------------------------------------------------------------------

    def register(
        self,
        device: str,
        camera: str,
        day: str,
        stem: str,
        files: dict[str, bytes],
        now: float,
    ) -> str:
        """Record one stored upload (`files`: {suffix: bytes}) as a pending item; its id.

        Raises ValueError when a part is unsafe as a path segment.
        """
        check_item_key(device, camera, day, stem)
        meta = _load_json(files.get(".json"))
        names = sidecar_class_names(meta)
        lines = _lines(files.get(".txt"))
        iid = item_id(device, camera, day, stem)
        with self.store.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO intake_items(id, device, camera, day, stem, captured, "
                "received, class_names, classes, boxes) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    iid,
                    device,
                    camera,
                    day,
                    stem,
                    capture_time(meta, now),
                    now,
                    json.dumps(names),
                    class_set(lines, names),
                    len(lines),
                ),
            )
        return iid

    def index(self) -> int:
        """Register every item in `intake/` not yet known (as pending); how many were added.

        Files whose names break the id, day or stem rules are skipped and logged.
        """
        known = {
            r[0]
            for r in self.store.read(
                "SELECT device||'/'||camera||'/'||day||'/'||stem FROM intake_items"
            )
        }
        added = 0
        for jpg in sorted(self.intake_dir.glob("*/*/*/*.jpg")):
            device, camera, day = jpg.parts[-4:-1]
            stem = jpg.name[: -len(".jpg")]
            if f"{device}/{camera}/{day}/{stem}" in known:
                continue
            files = {
                s: p.read_bytes() for s in (".txt", ".json") if (p := jpg.with_suffix(s)).is_file()
            }
            try:
                self.register(device, camera, day, stem, files, jpg.stat().st_mtime)
            except ValueError as err:
                log.warning("intake file skipped", path=str(jpg), error=str(err))
                continue
            added += 1
        return added

    # -- reading --------------------------------------------------------------------------------

    def items(self, flt: ReviewFilter, limit: int = -1, offset: int = 0) -> list[ItemRow]:
        """Items matching `flt`, oldest capture first (`limit` -1: all)."""
        where, args = flt.where()
        rows = self.store.read(
            f"SELECT * FROM intake_items WHERE {where} "
            "ORDER BY device, camera, captured, stem LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [_row(r) for r in rows]

    def counts(self, flt: ReviewFilter) -> dict[str, int]:
        """Items per status matching `flt` without its status condition (every status listed)."""
        where, args = flt.model_copy(update={"status": None}).where()
        rows = self.store.read(
            f"SELECT status, COUNT(*) FROM intake_items WHERE {where} GROUP BY status", tuple(args)
        )
        out = {s.value: 0 for s in ReviewStatus}
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def facets(self) -> dict[str, list[str]]:
        """Distinct devices, cameras, days and class names of all items (for filter menus)."""
        out: dict[str, list[str]] = {}
        for column in ("device", "camera", "day"):
            rows = self.store.read(f"SELECT DISTINCT {column} FROM intake_items ORDER BY 1")
            out[f"{column}s"] = [r[0] for r in rows]
        names: set[str] = set()
        for r in self.store.read("SELECT DISTINCT classes FROM intake_items"):
            names.update(n for n in r[0].split("\n") if n)
        out["classes"] = sorted(names)
        return out

    def item(self, iid: str) -> ItemRow:
        """One item by id, or ReviewError(not_found)."""
        r = self.store.read_one("SELECT * FROM intake_items WHERE id=?", (iid,))
        if r is None:
            raise ReviewError(ReviewRefusal.NOT_FOUND, f"no intake item {iid}")
        return _row(r)

    def file(self, row: ItemRow, suffix: str) -> Path:
        """The item's file, or ReviewError(missing_files) when it is gone."""
        path = row.path(self.intake_dir, suffix)
        if not path.is_file():
            raise ReviewError(ReviewRefusal.MISSING_FILES, f"{row.key}{suffix} is missing")
        return path

    def detail(self, iid: str) -> dict[str, Any]:
        """The item with its current labels and the teacher's original (None if never edited)."""
        row = self.item(iid)
        labels_path = row.path(self.intake_dir, ".txt")
        text = labels_path.read_text(encoding="utf-8") if labels_path.is_file() else ""
        meta_path = row.path(self.intake_dir, ".json")
        meta = _load_json(meta_path.read_bytes() if meta_path.is_file() else None)
        review = meta.get("review") if isinstance(meta.get("review"), dict) else {}
        return {
            **row.view(),
            "labels": text,
            "boxes_list": [
                {"index": i, "class_id": ln.class_id, "xywh": [float(v) for v in ln.rest.split()]}
                for i, ln in enumerate(parse_label_text(text))
            ],
            "original_labels": review.get("original_labels"),
            "edits": review.get("edits", []),
        }

    # -- acting ---------------------------------------------------------------------------------

    def _targets(self, flt: ReviewFilter) -> list[ItemRow]:
        """The items a bulk action covers; every id given must exist (ReviewError otherwise)."""
        flt.check_bulk()
        if flt.ids:
            known = ReviewFilter(ids=flt.ids)
            found = {r.id for r in self.items(known)}
            missing = sorted(set(flt.ids) - found)
            if missing:
                raise ReviewError(
                    ReviewRefusal.NOT_FOUND, f"no intake item(s) {', '.join(missing)}"
                )
        return self.items(flt)

    def act(
        self,
        action: ReviewAction,
        flt: ReviewFilter,
        by: str,
        why: str | None,
        now: float,
        edit: LabelEdit | None = None,
    ) -> ActionResult:
        """Accept, reject or relabel every item matching `flt` (ReviewError on a bad request).

        A relabel checks every item's edit before writing any file, so a bad index or class
        changes nothing.
        """
        rows = self._targets(flt)
        if action is ReviewAction.RELABEL:
            if edit is None or edit.is_empty():
                raise ReviewError(ReviewRefusal.BAD_REQUEST, "relabel needs box changes or deletes")
            return self._relabel(rows, edit, by, why, now)
        changed, unchanged = [], []
        with self.store.tx() as db:
            for row in rows:
                new = next_status(row.status, action, row.edited)
                if new is row.status:
                    unchanged.append(row.id)
                    continue
                self._set(db, row.id, new, by, why, now)
                changed.append(row.id)
        status = ReviewStatus.REJECTED if action is ReviewAction.REJECT else ReviewStatus.ACCEPTED
        log.info("review", action=action.value, changed=len(changed), unchanged=len(unchanged))
        return ActionResult(status, changed, unchanged)

    @staticmethod
    def _set(
        db: sqlite3.Connection, iid: str, status: ReviewStatus, by: str, why: str | None, now: float
    ) -> None:
        db.execute(
            "UPDATE intake_items SET status=?, updated=?, updated_by=?, reason=? WHERE id=?",
            (status.value, now, by, why, iid),
        )

    def _relabel(
        self, rows: list[ItemRow], edit: LabelEdit, by: str, why: str | None, now: float
    ) -> ActionResult:
        with self._files:
            plans = []
            for row in rows:
                text = self.file(row, ".txt").read_text(encoding="utf-8")
                try:
                    new = apply_edit(parse_label_text(text), edit, row.class_names)
                except ValueError as err:
                    raise ReviewError(ReviewRefusal.BAD_REQUEST, f"{row.id}: {err}") from None
                plans.append((row, text, new))
            for row, text, new in plans:
                self._write_edit(row, text, new, edit, by, now)
            with self.store.tx() as db:
                for row, _, new in plans:
                    status = next_status(row.status, ReviewAction.RELABEL, True)
                    self._set(db, row.id, status, by, why, now)
                    db.execute(
                        "UPDATE intake_items SET edited=1, boxes=?, classes=? WHERE id=?",
                        (len(new), class_set(new, row.class_names), row.id),
                    )
        log.info("review", action="relabel", changed=len(plans))
        return ActionResult(ReviewStatus.RELABELLED, [r.id for r, _, _ in plans], [])

    def _write_edit(
        self, row: ItemRow, text: str, new: list[LabelLine], edit: LabelEdit, by: str, now: float
    ) -> None:
        """Sidecar first (the original kept once), then the labels; each atomically."""
        meta_path = row.path(self.intake_dir, ".json")
        meta = _load_json(meta_path.read_bytes() if meta_path.is_file() else None)
        review = meta.get("review") if isinstance(meta.get("review"), dict) else {}
        review.setdefault("original_labels", text)
        review.setdefault("edits", []).append(
            {
                "at": now,
                "by": by,
                "boxes": {str(k): v for k, v in edit.boxes.items()},
                "delete": edit.delete,
            }
        )
        meta["review"] = review
        atomic_write(meta_path, (json.dumps(meta, indent=1) + "\n").encode(), mode=0o644)
        body = "".join(ln.text() + "\n" for ln in new)
        atomic_write(row.path(self.intake_dir, ".txt"), body.encode(), mode=0o644)
