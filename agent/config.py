"""The agent's configuration: YAML validated by pydantic v2, `extra="forbid"` everywhere.

Models here never touch disk or network; `load_config` is the one place that reads the
file. Secrets are never written in YAML: fields ending in `_env` name an environment
variable that holds the secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.camera_overlay import read_pushed_cameras
from agent.contracts.ids import SafeId
from agent.engines.registry import EngineConfig
from agent.events.config import EventsConfig
from agent.fallback.config import FallbackConfig
from agent.homeassistant.config import HomeAssistantConfig
from agent.ota.config import OtaConfig
from agent.publish.config import MqttConfig, OutboxConfig, TlsConfig
from agent.snapshots.config import SnapshotsConfig
from agent.sources.config import CameraConfig
from agent.stages.config import BatchConfig
from agent.tracking.config import TrackingConfig
from agent.trust.config import TrustConfig
from agent.util.models import FrozenModel
from agent.yamlconfig import ConfigError, load_yaml_model, validate_mapping

__all__ = [
    "AgentConfig",
    "CameraConfig",  # lives in agent.sources.config (sources need no engine import either)
    "ConfigError",
    "MqttConfig",  # lives in agent.publish.config (the publisher must not import this module)
    "TlsConfig",
    "load_config",
    "parse_config",
]


class DeviceConfig(FrozenModel):
    id: SafeId
    """Device id: one MQTT topic level, [a-z0-9][a-z0-9-]{0,62}."""
    state_dir: Path = Path("/var/lib/edge-agent")
    """Writable directory for the outbox, OTA staging, models and captures."""


class ModelConfig(FrozenModel):
    path: Path
    """Model file (ONNX, or a TensorRT engine) used at first start."""
    manifest: Path | None = None
    """Manifest JSON beside the model (name, version, classes, input size)."""
    engine: EngineConfig
    """Inference backend; chosen by `type`."""
    conf_threshold: float = Field(0.25, ge=0, le=1)
    """Drop boxes below this score."""
    iou_threshold: float = Field(0.45, ge=0, le=1)
    """NMS IoU threshold."""
    max_detections: int = Field(100, ge=1)
    """Most boxes kept per frame."""


class HealthConfig(FrozenModel):
    interval_s: float = Field(10.0, gt=0)
    """Period of the `health` message."""
    prometheus_port: int | None = Field(None, ge=1, le=65535)
    """Serve Prometheus metrics on this port when set."""
    prometheus_addr: str = "127.0.0.1"
    """Address the metrics server binds."""
    progress_timeout_s: float = Field(15.0, gt=0)
    """Stop watchdog pings when no frame was processed for this long (unless every camera is
    legitimately in backoff)."""


class LoggingConfig(FrozenModel):
    format: Literal["auto", "json", "console"] = "auto"
    """`auto`: console on a terminal, JSON otherwise."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""


class AgentConfig(FrozenModel):
    device: DeviceConfig
    """Who this device is and where it keeps state."""
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    """Broker connection."""
    cameras: list[CameraConfig] = Field(min_length=1)
    """At least one camera."""
    model: ModelConfig
    """The detector used at first start."""
    batch: BatchConfig = Field(default_factory=BatchConfig)
    """Batching across cameras: frames of several cameras in one engine call."""
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    """On-disk outbox for detection messages."""
    health: HealthConfig = Field(default_factory=HealthConfig)
    """Health topic, watchdog and Prometheus."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Log output."""
    trust: TrustConfig = Field(default_factory=TrustConfig)
    """Every public key the device trusts (release keys, gateway keys) and the model-name pin; used
    by OTA, delivery acks and config pushes (docs/trust.md)."""
    ota: OtaConfig = Field(default_factory=OtaConfig)
    """Over-the-air model updates."""
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    """Florence-2 fallback for hard frames."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """Multi-object tracking per camera."""
    events: EventsConfig = Field(default_factory=EventsConfig)
    """Tracked-object events, zone and line counts (zones and lines are per camera)."""
    snapshots: SnapshotsConfig = Field(default_factory=SnapshotsConfig)
    """Best-frame JPEG per event, kept under the state dir and published retained."""
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    """Home Assistant MQTT device discovery (docs/homeassistant.md)."""
    stop_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Longest orderly shutdown before the daemon gives up waiting."""

    @model_validator(mode="after")
    def _unique_cameras(self) -> AgentConfig:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _events_need_tracking(self) -> AgentConfig:
        if self.events.enabled and not self.tracking.enabled:
            raise ValueError("events.enabled needs tracking.enabled (events follow tracks)")
        if self.homeassistant.enabled and not self.events.enabled:
            raise ValueError(
                "homeassistant.enabled needs events.enabled (and tracking.enabled): its "
                "occupancy, counts and snapshots come from events"
            )
        return self

    @model_validator(mode="after")
    def _keys_for_what_needs_them(self) -> AgentConfig:
        if self.outbox.require_gateway_ack and not self.trust.gateway_keys:
            raise ValueError(
                "outbox.require_gateway_ack needs a gateway key to verify acks with: "
                "set trust.gateway_keys (or turn require_gateway_ack off)"
            )
        if self.ota.enabled and (not self.trust.release_keys or not self.trust.gateway_keys):
            raise ValueError(
                "ota.enabled needs at least one release key and one gateway key: set "
                "trust.release_keys and trust.gateway_keys (`edge-gateway keys export`)"
            )
        return self

    @model_validator(mode="after")
    def _tensorrt_profile_fits_the_batch(self) -> AgentConfig:
        engine = self.model.engine
        if engine.type == "tensorrt" and engine.max_batch < self.batch.max:
            raise ValueError(
                f"batch.max is {self.batch.max} but model.engine.max_batch is "
                f"{engine.max_batch}: TensorRT engines are built for 1..max_batch, set "
                f"model.engine.max_batch: {self.batch.max}"
            )
        return self


def parse_config(data: object, path: Path) -> AgentConfig:
    """Validate already-parsed YAML data (relative paths stay relative to the working directory)."""
    return validate_mapping(AgentConfig, data, path)


def load_config(path: Path, *, pushed: bool = True) -> AgentConfig:
    """Read and validate a YAML config file. Raises ConfigError listing every problem.

    With `pushed` (the default), cameras pushed from the gateway and kept under the state dir
    (`agent.camera_overlay`) replace the file's `cameras:` section.
    """
    cfg = load_yaml_model(AgentConfig, path)
    overlay = read_pushed_cameras(cfg.device.state_dir) if pushed else None
    return cfg if overlay is None else with_cameras(cfg, overlay.cameras, overlay.path)


def with_cameras(cfg: AgentConfig, cameras: object, source: Path) -> AgentConfig:
    """`cfg` with its `cameras:` section replaced by `cameras` (validated; problems name
    `source`)."""
    data = cfg.model_dump(mode="python", by_alias=True)
    data["cameras"] = cameras
    return validate_mapping(AgentConfig, data, source)
