"""The `homeassistant:` section of the agent config."""

from __future__ import annotations

from pydantic import Field

from agent.contracts.ids import SafeId
from agent.util.models import FrozenModel


class HomeAssistantConfig(FrozenModel):
    enabled: bool = False
    """Publish Home Assistant MQTT device discovery (retained) on
    `<discovery_prefix>/device/<device>/config`: occupancy and count per camera and zone and label,
    line counters, the latest snapshot per camera and label, the fps. See docs/homeassistant.md."""
    discovery_prefix: SafeId = "homeassistant"
    """Home Assistant's discovery prefix (its MQTT integration setting). The shipped broker ACL
    (configs/mosquitto/acl) allows devices `homeassistant` only."""
    birth_topic: str = Field("homeassistant/status", pattern=r"^[^#+]+$")
    """Home Assistant's birth topic: the discovery is published again whenever `online` arrives
    there (after a Home Assistant restart)."""
    labels: list[str] | None = Field(None, min_length=1)
    """Class names that get entities. Default: a zone's or line's own `labels` when set, else every
    class of the model at start."""
    name: str | None = Field(None, min_length=1)
    """Device name shown in Home Assistant (default: the id)."""
