"""Zones, lines, tracking and events in the agent config: validated, typos fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, parse_config
from tests.helpers.daemon import demo_config

YARD = {
    "zones": [
        {
            "id": "driveway",
            "polygon": [[0, 300], [768, 300], [768, 576], [0, 576]],
            "labels": ["person", "car"],
        }
    ],
    "lines": [{"id": "gate", "points": [[0, 400], [768, 400]]}],
}


def config_with(camera_extra: dict[str, Any], **top: Any) -> dict[str, Any]:
    cfg = demo_config(Path("/tmp/x"), 1883, **top)
    cfg["cameras"][0].update(camera_extra)
    return cfg


def problems(cfg: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, Path("agent.yaml"))
    return "\n".join(err.value.problems)


def test_the_issue_yaml_is_accepted() -> None:
    """The zone and line exactly as the issue writes them load."""
    cfg = parse_config(
        config_with(YARD, tracking={"enabled": True}, events={"enabled": True}), Path("a.yaml")
    )
    cam = cfg.cameras[0]
    assert cam.zones[0].id == "driveway" and cam.lines[0].points == ((0, 400), (768, 400))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"zones": [{"id": "z", "polygon": [[0, 0], [1, 1]]}]}, "at least 3"),  # 2 points
        ({"zones": [{"id": "z", "polygon": [[0, 0], [0, 0], [1, 1]]}]}, "3 distinct"),
        ({"lines": [{"id": "l", "points": [[5, 5], [5, 5]]}]}, "2 distinct"),
        ({"lines": [{"id": "l", "points": [[5, 5]]}]}, "lines.0.points"),  # one point
        ({"zones": [YARD["zones"][0], YARD["zones"][0]]}, "repeated: driveway"),
        ({"lines": [{"id": "l", "point": [[0, 0], [1, 1]]}]}, "point"),  # typo
        ({"zones": [{"id": "Bad Id", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "zones.0.id"),
    ],
)
def test_bad_zones_and_lines_fail(extra: dict[str, Any], needle: str) -> None:
    """Each malformed zone or line is refused with a message naming it."""
    assert needle in problems(config_with(extra))


def test_events_need_tracking() -> None:
    """events.enabled without tracking.enabled is refused."""
    assert "needs tracking.enabled" in problems(config_with({}, events={"enabled": True}))


def test_tracking_typo_fails() -> None:
    """An unknown key under tracking: fails loudly."""
    assert "stationary_sec" in problems(config_with({}, tracking={"stationary_sec": 3}))
