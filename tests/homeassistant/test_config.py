"""The `homeassistant:` and `snapshots:` sections: defaults, dependencies, typos fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, parse_config
from tests.helpers.daemon import demo_config

ON = {"tracking": {"enabled": True}, "events": {"enabled": True}}


def problems(cfg: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, Path("agent.yaml"))
    return "\n".join(err.value.problems)


def test_defaults_and_enabled() -> None:
    """Off by default with the `homeassistant` prefix; on with events it loads."""
    cfg = parse_config(demo_config(Path("/tmp/x"), 1883), Path("a.yaml"))
    assert not cfg.homeassistant.enabled and cfg.homeassistant.discovery_prefix == "homeassistant"
    assert cfg.snapshots.enabled and cfg.snapshots.publish_max_bytes < 1024 * 1024
    on = demo_config(Path("/tmp/x"), 1883, homeassistant={"enabled": True}, **ON)
    assert parse_config(on, Path("a.yaml")).homeassistant.enabled


@pytest.mark.parametrize(
    ("top", "expect"),
    [
        ({"homeassistant": {"enabled": True}}, "homeassistant.enabled needs events.enabled"),
        ({"homeassistant": {"enabled": True, "prefix": "ha"}, **ON}, "prefix"),  # a typo
        ({"homeassistant": {"discovery_prefix": "home/assistant"}}, "discovery_prefix"),
        ({"homeassistant": {"birth_topic": "homeassistant/#"}}, "birth_topic"),  # wildcard
        ({"snapshots": {"publish_max_bytes": 2 * 1024 * 1024}}, "publish_max_bytes"),  # > 1 MiB
        ({"snapshots": {"quota": 10}}, "quota"),  # a typo of quota_mb
    ],
)
def test_bad_sections_fail_with_the_field(top: dict[str, Any], expect: str) -> None:
    """Each problem names its field."""
    assert expect in problems(demo_config(Path("/tmp/x"), 1883, **top))


def test_a_discovery_too_large_for_the_broker_fails_at_start() -> None:
    """Thousands of entities would not fit in one MQTT message: a clear error naming the fix."""
    from agent.contracts.topics import Topics
    from agent.homeassistant.build import DiscoveryTooLarge, checked_discovery

    cfg = parse_config(
        demo_config(Path("/tmp/x"), 1883, homeassistant={"enabled": True}, **ON), Path("a")
    )
    classes = tuple(f"class-{i}" for i in range(3000))
    with pytest.raises(DiscoveryTooLarge, match="homeassistant.labels"):
        checked_discovery(cfg, Topics(cfg.device.id), classes)
    assert checked_discovery(cfg, Topics(cfg.device.id), ("person",))
