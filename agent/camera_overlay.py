"""Pushed cameras: the `cameras:` overlay a gateway sent, kept under the device's state dir.

A camera config pushed from the gateway (`edge.config-command/1`, docs/cameras.md) is written,
once verified and validated, as `<state_dir>/config/cameras.json`: the signed command exactly
as received. Whenever the agent config is loaded (at start, on reload, by `check-config`), the
`cameras` list of that file replaces the main file's `cameras:` section; everything else comes
from the main file. Deleting the file (and reloading) returns to the main file's cameras.
The state dir is used because `/etc` is read-only to the hardened service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.util.files import atomic_write
from agent.yamlconfig import NOT_THERE, ConfigError, FileFormat, read_config_file

OVERLAY_DIR = "config"
OVERLAY_FILE = "cameras.json"
PUSHED_JSON = FileFormat(
    json.loads, json.JSONDecodeError, "cannot read pushed cameras", "pushed cameras are not JSON"
)


def overlay_path(state_dir: Path) -> Path:
    """Where the pushed cameras of a device with this state dir live."""
    return Path(state_dir) / OVERLAY_DIR / OVERLAY_FILE


@dataclass(frozen=True)
class PushedCameras:
    """The overlay as read: its file, the `cameras` list and the command that carried it."""

    path: Path
    cameras: list[Any]
    command_id: str | None


def read_pushed_cameras(state_dir: Path) -> PushedCameras | None:
    """The pushed cameras, or None when nothing was pushed.

    Raises:
        ConfigError: the file exists but cannot be read or holds no `cameras` list.
    """
    path = overlay_path(state_dir)
    try:
        data = read_config_file(path, PUSHED_JSON, missing_ok=True)
    except NOT_THERE:
        return None  # nothing pushed (a state dir that is no directory fails at start)
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise ConfigError(
            path, ["cameras: expected a list (remove the file to use the main config)"]
        )
    command_id = data.get("command_id")
    return PushedCameras(path, data["cameras"], command_id if isinstance(command_id, str) else None)


def write_pushed_cameras(state_dir: Path, command: dict[str, Any]) -> Path:
    """Write a verified, validated config command as the overlay (atomically); its path."""
    path = overlay_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(command, indent=1, sort_keys=True).encode("utf-8"), mode=0o640)
    return path
