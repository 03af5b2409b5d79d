"""Pushed cameras under the state dir replace the config file's `cameras:` at every load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agent.camera_overlay import overlay_path, write_pushed_cameras
from agent.config import ConfigError, load_config
from tests.helpers.daemon import DEMO_CLIP, demo_config


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(demo_config(tmp_path / "state", 1883)))
    return path


def test_overlay_replaces_cameras_only(tmp_path: Path) -> None:
    """With a pushed overlay the cameras come from it, everything else from the file."""
    path = config_file(tmp_path)
    cams = [{"id": "pushed", "source": {"type": "file", "path": str(DEMO_CLIP)}}]
    write_pushed_cameras(tmp_path / "state", {"command_id": "c1", "cameras": cams})
    cfg = load_config(path)
    assert [c.id for c in cfg.cameras] == ["pushed"]
    assert cfg.device.id == "dev-test"
    assert [c.id for c in load_config(path, pushed=False).cameras] == ["cam-a"]


def test_no_overlay_loads_the_file(tmp_path: Path) -> None:
    """Without an overlay the file's cameras run."""
    assert [c.id for c in load_config(config_file(tmp_path)).cameras] == ["cam-a"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "pushed cameras are not JSON"),  # damaged file
        (json.dumps({"cameras": "x"}), "cameras: expected a list"),  # wrong shape
        (json.dumps({"cameras": [{"id": "c"}]}), "cameras.0.source"),  # invalid camera
    ],
)
def test_broken_overlay_is_an_error_naming_its_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    """A broken overlay is reported with its path, never silently ignored."""
    path = config_file(tmp_path)
    target = overlay_path(tmp_path / "state")
    target.parent.mkdir(parents=True)
    target.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == target
    assert any(problem in p for p in err.value.problems), err.value.problems
