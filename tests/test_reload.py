"""The pure reload plan: what changes live, what restarts a reader, what needs a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, parse_config
from agent.reload import config_sha256, effective_config, plan_reload
from tests.helpers.daemon import demo_config


def cfg(device_id: str = "dev-test", **overrides: Any) -> AgentConfig:
    data = demo_config(Path("/tmp/state"), 1883, device_id, **overrides)
    return parse_config(data, Path("x.yaml"))


def cam(cam_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": cam_id, "source": {"type": "file", "path": "/tmp/clip.mp4"}, **extra}


BASE = cfg(cameras=[cam("a"), cam("b")])


@pytest.mark.parametrize(
    ("new", "field", "want"),
    [
        # a camera appears: started
        (cfg(cameras=[cam("a"), cam("b"), cam("c")]), "added", ["c"]),
        # a camera disappears: stopped
        (cfg(cameras=[cam("a")]), "removed", ["b"]),
        # a reader setting changes: that reader restarts
        (cfg(cameras=[cam("a", fps_cap=2), cam("b")]), "restarted", ["a"]),
        # thresholds apply between two frames
        (
            cfg(cameras=[cam("a"), cam("b")], model={"conf_threshold": 0.9}),
            "live",
            ["model.conf_threshold"],
        ),
        # the device id and the broker need a restart
        (
            cfg(cameras=[cam("a"), cam("b")], device_id="other", mqtt={"port": 1}),
            "restart_required",
            ["device.id", "mqtt.port"],
        ),
        # the same config: nothing at all
        (cfg(cameras=[cam("a"), cam("b")]), "restart_required", []),
    ],
)
def test_plan_sorts_each_change(new: AgentConfig, field: str, want: list[str]) -> None:
    """Each kind of difference lands in its own part of the plan."""
    assert plan_reload(BASE, new).summary()[field] == want


def test_unchanged_config_changes_nothing() -> None:
    """Reloading the running config is a no-op with the same sha256."""
    same = cfg(cameras=[cam("a"), cam("b")])
    assert not plan_reload(BASE, same).changes_anything
    assert config_sha256(same) == config_sha256(BASE)


def test_effective_config_keeps_restart_only_values() -> None:
    """The running config takes live changes and keeps the old restart-only values."""
    new = cfg(device_id="other", cameras=[cam("c")], model={"iou_threshold": 0.3})
    running = effective_config(BASE, new, plan_reload(BASE, new))
    assert running.device.id == BASE.device.id
    assert [c.id for c in running.cameras] == ["c"]
    assert running.model.iou_threshold == 0.3
    assert config_sha256(running) not in {config_sha256(BASE), config_sha256(new)}
