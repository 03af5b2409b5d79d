"""What a config reload changes (pure): the running config vs a newly read one.

`plan_reload(old, new)` sorts every difference into what the daemon applies live and what
needs a restart:

- cameras added, removed, or changed in a way their reader sees (source, pacing, stall and
  backoff settings: `READER_FIELDS`) start, stop or restart their reader; any other camera
  field (zones and lines, when they exist) is read by the inference loop from the next frame
  through the live config, without touching the reader;
- `LIVE_PATHS` (the detector's thresholds) apply between two frames;
- every other difference is named (as a field path, e.g. `device.id`, `model.path`) in
  `restart_required`; the running value stays in force until the daemon restarts.

`effective_config(old, new, plan)` is the config the daemon runs after the reload: the new one
with each restart-only path set back to its running value. `config_sha256` identifies it.
No disk, no network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from agent.config import AgentConfig
from agent.contracts.canonical import canonical_json
from agent.sources.config import CameraConfig

READER_FIELDS = frozenset(
    {"source", "fps_cap", "stall_timeout_s", "backoff_min_s", "backoff_max_s"}
)
"""Camera fields its reader thread was built with: a change restarts the reader."""

LIVE_PATHS = frozenset({"model.conf_threshold", "model.iou_threshold", "model.max_detections"})
"""Paths outside `cameras` that apply between two frames."""


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does.

    Attributes:
        added: cameras to start (in config order).
        removed: camera ids to stop.
        restarted: cameras whose reader restarts with the new config.
        updated: camera ids whose other fields (zones, lines) changed: no reader restart.
        live: `LIVE_PATHS` that changed.
        restart_required: other changed paths; their running values stay.
    """

    added: tuple[CameraConfig, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[CameraConfig, ...] = ()
    updated: tuple[str, ...] = ()
    live: tuple[str, ...] = ()
    restart_required: tuple[str, ...] = ()

    @property
    def changes_anything(self) -> bool:
        """Whether applying the plan changes what runs."""
        return bool(self.added or self.removed or self.restarted or self.updated or self.live)

    def summary(self) -> dict[str, list[str]]:
        """Camera ids and paths per kind of change, for the log line."""
        return {
            "added": [c.id for c in self.added],
            "removed": list(self.removed),
            "restarted": [c.id for c in self.restarted],
            "updated": list(self.updated),
            "live": list(self.live),
            "restart_required": list(self.restart_required),
        }


def _reader_view(cam: CameraConfig) -> dict[str, Any]:
    return cam.model_dump(mode="json", include=set(READER_FIELDS))


def _camera_changes(
    old: list[CameraConfig], new: list[CameraConfig]
) -> tuple[tuple[CameraConfig, ...], tuple[str, ...], tuple[CameraConfig, ...], tuple[str, ...]]:
    before = {c.id: c for c in old}
    after = {c.id: c for c in new}
    added = tuple(c for c in new if c.id not in before)
    removed = tuple(c.id for c in old if c.id not in after)
    restarted: list[CameraConfig] = []
    updated: list[str] = []
    for cam in new:
        prev = before.get(cam.id)
        if prev is None or prev == cam:
            continue
        if _reader_view(prev) != _reader_view(cam):
            restarted.append(cam)
        else:
            updated.append(cam.id)
    return added, removed, tuple(restarted), tuple(updated)


def changed_paths(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where two JSON-like dicts differ, one level into nested dicts (sections
    and their fields: `model.path`, `mqtt.port`)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        path = f"{prefix}{key}"
        if not prefix and isinstance(a, dict) and isinstance(b, dict):
            out.extend(changed_paths(a, b, f"{path}."))
        else:
            out.append(path)
    return out


def plan_reload(old: AgentConfig, new: AgentConfig) -> ReloadPlan:
    """Sort the differences between the running config `old` and `new` (see the module doc)."""
    a = old.model_dump(mode="json", exclude={"cameras"})
    b = new.model_dump(mode="json", exclude={"cameras"})
    paths = changed_paths(a, b)
    added, removed, restarted, updated = _camera_changes(old.cameras, new.cameras)
    return ReloadPlan(
        added=added,
        removed=removed,
        restarted=restarted,
        updated=updated,
        live=tuple(p for p in paths if p in LIVE_PATHS),
        restart_required=tuple(p for p in paths if p not in LIVE_PATHS),
    )


def effective_config(old: AgentConfig, new: AgentConfig, plan: ReloadPlan) -> AgentConfig:
    """`new` with every restart-only path set back to its value in `old`."""
    data = new.model_dump(mode="python", by_alias=True)
    running = old.model_dump(mode="python", by_alias=True)
    for path in plan.restart_required:
        section, _, field = path.partition(".")
        if field:
            data[section][field] = running[section][field]
        else:
            data[section] = running[section]
    return AgentConfig.model_validate(data)


def config_sha256(cfg: AgentConfig) -> str:
    """SHA-256 hex of the canonical JSON of a validated config (defaults filled in): the same
    for two files that mean the same config."""
    return hashlib.sha256(canonical_json(cfg.model_dump(mode="json", by_alias=True))).hexdigest()
