"""The gateway's configuration: YAML validated by pydantic v2, `extra="forbid"` everywhere.

Models here never touch disk or network; `load_gateway_config` is the one place that reads the
file. No secret is written in YAML: the broker password is read from the environment variable
named by `mqtt.password_env`, and device intake tokens are stored as SHA-256 hashes only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from agent.contracts.ids import SafeId, check_id
from agent.gateway.tokens import is_sha256_hex
from agent.trust.signing import trusted_key_map
from agent.trust.tls import TlsConfig
from agent.util.models import FrozenModel
from agent.yamlconfig import ConfigError, load_yaml_model, secret_from_env, validate_mapping

DEFAULT_CONFIG_PATH = Path("/etc/edge-gateway/gateway.yaml")


StrictModel = FrozenModel  # every gateway config section: unknown keys are errors, frozen


class HttpConfig(StrictModel):
    host: str = "0.0.0.0"
    """Address the HTTP server (API, artifacts, intake) binds."""
    port: int = Field(8080, ge=1, le=65535)
    """TCP port of the HTTP server."""
    public_url: str = "http://127.0.0.1:8080"
    """Base URL devices use to reach this server; artifact URLs in commands start with it."""
    admin_loopback_only: bool = False
    """Extra restriction on top of the admin token: accept admin API calls only from
    127.0.0.1/::1."""
    admin_tokens_sha256: list[str] = Field(default_factory=list)
    """SHA-256 (hex) of each accepted admin bearer token (`edge-gateway admin-token` makes one).
    Empty: every admin route answers 401."""
    allowed_hosts: list[str] | None = None
    """Host header names (without port) the admin API answers to; others get 421. Default:
    localhost, 127.0.0.1, ::1, the bind `host` and the host of `public_url`."""

    @field_validator("admin_tokens_sha256")
    @classmethod
    def _check_admin_tokens(cls, value: list[str]) -> list[str]:
        for i, digest in enumerate(value):
            if not is_sha256_hex(digest):
                raise ValueError(f"admin_tokens_sha256[{i}] must be 64 lower-case hex digits")
        return value

    def host_names(self) -> frozenset[str]:
        """The Host header names accepted by the admin API (lower case, no port, no brackets)."""
        if self.allowed_hosts is not None:
            return frozenset(h.lower().strip("[]") for h in self.allowed_hosts)
        names = {"localhost", "127.0.0.1", "::1"}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host.lower().strip("[]"))
        public = urlsplit(self.public_url).hostname
        if public:
            names.add(public.lower())
        return frozenset(names)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("public_url must start with http:// or https://")
        return value.rstrip("/")


class GatewayMqttConfig(StrictModel):
    host: str = "127.0.0.1"
    """Broker host name or address."""
    port: int = Field(1883, ge=1, le=65535)
    """Broker TCP port."""
    client_id: str = "edge-gateway"
    """MQTT client id of the gateway."""
    topic_prefix: SafeId = "edge"
    """First level of every topic."""
    keepalive_s: int = Field(30, ge=5, le=3600)
    """MQTT keepalive in seconds."""
    username: str | None = None
    """Broker user name."""
    password_env: str | None = None
    """Name of the environment variable holding the broker password."""
    tls: TlsConfig | None = None
    """TLS to the broker (CA, client certificate and key: the shipped broker's 8883 mutual-TLS
    listener; the certificate's CN must be `gateway` for the ACL). Plain TCP when absent."""

    def password(self) -> str | None:
        """Read the password from the environment variable named by `password_env`."""
        return secret_from_env(self.password_env, "mqtt.password_env")


class RolloutDefaults(StrictModel):
    canary: int = Field(1, ge=0)
    """Devices updated first; the rest wait for them."""
    wave_size: int = Field(5, ge=1)
    """Devices updated at once after the canary."""
    max_failures: int = Field(1, ge=1)
    """Failed devices (outside the canary) that abort the rollout."""
    timeout_s: float = Field(600.0, gt=0)
    """Longest a device may take from command to a terminal state."""
    command_ttl_s: float = Field(900.0, gt=0)
    """Signed commands expire this long after they are issued."""
    tick_s: float = Field(0.5, gt=0)
    """How often timeouts are checked."""
    resend_s: float = Field(10.0, gt=0)
    """A command with no answer from its device is sent again this often (same id: the device treats
    it as a redelivery) until the device's timeout."""


class IntakeConfig(StrictModel):
    max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest accepted upload (whole request body)."""
    tokens_sha256: dict[str, str] = Field(default_factory=dict)
    """Device id -> SHA-256 (hex) of that device's bearer token, for devices enrolled without one
    (`edge-gateway devices enroll ID` makes and stores a token; `edge-gateway intake-token DEVICE`
    makes one for this map). Only enrolled devices count."""
    quota_bytes_per_day: int = Field(512 * 1024 * 1024, ge=0)
    """Bytes one device may store per UTC day; beyond, uploads get 429 (counted)."""
    quota_files_per_day: int = Field(20000, ge=0)
    """Files (image, labels, meta each count) one device may store per UTC day; beyond, uploads get
    429 (counted)."""
    min_free_bytes: int = Field(1024 * 1024 * 1024, ge=0)
    """Free space the data_dir file system keeps after an upload; below, uploads get 507
    (counted)."""

    @field_validator("tokens_sha256")
    @classmethod
    def _check_tokens(cls, value: dict[str, str]) -> dict[str, str]:
        for device, digest in value.items():
            check_id(device, "device id")
            if not is_sha256_hex(digest):
                raise ValueError(f"tokens_sha256[{device}] must be 64 lower-case hex digits")
        return value


class LoggingConfig(StrictModel):
    format: Literal["auto", "json", "console"] = "auto"
    """`auto`: console on a terminal, JSON otherwise."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""


class ArchiveConfig(StrictModel):
    enabled: bool = False
    """Store every detection message of the site in <data_dir>/detections.sqlite3 and ack it on
    edge/<device>/ack (for devices with outbox.require_gateway_ack)."""
    retention_days: float = Field(7.0, gt=0)
    """Stored detections are kept this long."""
    flush_interval_s: float = Field(0.2, gt=0, le=10)
    """Longest wait before a batch is written and acked."""
    batch_max: int = Field(500, ge=1)
    """Most messages written in one transaction."""
    queue_size: int = Field(20000, ge=100)
    """Messages waiting for the writer; beyond, not acked (replayed)."""
    max_bytes: int = Field(8 * 1024**3, ge=1024 * 1024)
    """Size cap of the archive file; beyond it the oldest rows are pruned (counted)."""
    max_streams_per_device: int = Field(64, ge=1)
    """Open streams (boot x camera x stream) tracked per device for acks; the least recently seen is
    forgotten first (counted)."""
    hole_expiry_s: float = Field(3600.0, gt=0)
    """A stream whose hole makes no progress this long is forgotten (counted); nothing past the hole
    is acked."""


class GatewayTrustConfig(StrictModel):
    release_keys: dict[str, str] = Field(default_factory=dict)
    """Release public keys (kept on the signing workstation) whose manifests `edge-gateway models
    import` accepts: {key id: base64 raw ed25519 key}, as printed by `edge-gateway keys init
    --release-only`."""

    @field_validator("release_keys")
    @classmethod
    def _keys_valid(cls, value: dict[str, str]) -> dict[str, str]:
        trusted_key_map(value)  # raises ValueError on bad base64, wrong length or a wrong key id
        return value


def _under_data_dir(name: str) -> property:
    """A read-only `GatewayConfig` path: `data_dir / name`."""

    def path(cfg: GatewayConfig) -> Path:
        return cfg.data_dir / name

    return property(path)


class GatewayConfig(StrictModel):
    data_dir: Path = Path("/var/lib/edge-gateway")
    """Writable directory: SQLite state, artifacts, manifests, intake."""
    keys_dir: Path = Path("/etc/edge-gateway/keys")
    """Directory (mode 0700) of the gateway private key (mode 0600); a single-box lab also keeps the
    release key here."""
    http: HttpConfig = Field(default_factory=HttpConfig)
    """HTTP server."""
    mqtt: GatewayMqttConfig = Field(default_factory=GatewayMqttConfig)
    """Broker."""
    rollout: RolloutDefaults = Field(default_factory=RolloutDefaults)
    """Defaults of `deploy` options."""
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    """Hard-frame intake."""
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    """Detection archive and gateway acks."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Logging."""
    trust: GatewayTrustConfig = Field(default_factory=GatewayTrustConfig)
    """Public keys the gateway trusts."""
    offline_after_s: float = Field(60.0, gt=0)
    """A device with no message for this long shows as stale."""

    db_path = _under_data_dir("gateway.sqlite3")
    """The SQLite state file."""
    archive_path = _under_data_dir("detections.sqlite3")
    """The detection archive (SQLite), with `archive.enabled`."""
    artifacts_dir = _under_data_dir("artifacts")
    """Content-addressed artifacts, one file per SHA-256."""
    intake_dir = _under_data_dir("intake")
    """Uploaded hard frames: <intake>/<device>/<camera>/<YYYY-MM-DD>/."""


class GatewayConfigError(ConfigError):
    """The gateway config file is missing, unreadable or invalid; `problems` lists each issue."""


def parse_gateway_config(data: object, path: Path) -> GatewayConfig:
    """Validate already-parsed YAML data (an empty file is all defaults)."""
    return validate_mapping(GatewayConfig, data, path, error=GatewayConfigError, empty_ok=True)


def load_gateway_config(path: Path) -> GatewayConfig:
    """Read and validate a gateway YAML config file."""
    return load_yaml_model(GatewayConfig, path, error=GatewayConfigError, empty_ok=True)
