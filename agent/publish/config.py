"""Config of the publisher: the broker connection (MQTT, TLS) and the on-disk outbox that sits
between the inference loop and MQTT. Light on purpose: importing it loads no engine.

Both live here, beside the code that uses them, so `agent.publish` never imports `agent.config`
(which pulls in the engine registry). See docs/delivery.md for what each outbox setting means
for delivery guarantees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from agent.contracts.ids import SafeId
from agent.trust.tls import TlsConfig
from agent.util.models import FrozenModel
from agent.util.validation import check_min_max
from agent.yamlconfig import secret_from_env


class OutboxConfig(FrozenModel):
    enabled: bool = True
    """Keep detections on disk until delivery is confirmed."""
    path: Path | None = None
    """SQLite file; defaults to <device.state_dir>/outbox.sqlite3."""
    max_bytes: int = Field(256 * 1024 * 1024, ge=64 * 1024)
    """Cap on the outbox files on disk (database + WAL); the oldest messages are dropped and counted
    to stay under it."""
    max_rows: int = Field(1_000_000, ge=10)
    """Cap on stored messages."""
    inflight: int = Field(100, ge=1, le=65535)
    """Most unacknowledged messages in flight."""
    require_gateway_ack: bool = False
    """Delete a message only after a signed gateway ack (edge.ack/2) for its stream covers it on
    edge/<device>/ack (PUBACK alone otherwise); needs the gateway's archive.enabled and at least one
    gateway key (trust.gateway_keys) to verify acks with."""
    gateway_ack_timeout_s: float = Field(30.0, gt=0)
    """With require_gateway_ack: replay the unacked messages when the oldest PUBACKed one has waited
    this long for a gateway ack."""
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite synchronous mode. NORMAL (WAL): commits survive a crash or kill -9 of the daemon, the
    last ones may be lost on power loss. FULL: fsync per commit, survives power loss, costs an fsync
    per batch."""
    batch_max: int = Field(256, ge=1, le=10_000)
    """Most messages committed in one SQLite transaction."""


class MqttConfig(FrozenModel):
    host: str = "127.0.0.1"
    """Broker host name or address."""
    port: int = Field(1883, ge=1, le=65535)
    """Broker TCP port."""
    protocol: Literal["v5", "v311"] = "v5"
    """MQTT protocol version."""
    client_id: str | None = None
    """MQTT client id; defaults to 'edge-agent-<device id>'."""
    topic_prefix: SafeId = "edge"
    """First level of every topic."""
    keepalive_s: int = Field(30, ge=5, le=3600)
    """MQTT keepalive in seconds."""
    detections_qos: Literal[0, 1] = 1
    """QoS of detection messages."""
    publish_empty: bool = True
    """Publish a detections message for frames with no detections."""
    username: str | None = None
    """Broker user name."""
    password_env: str | None = None
    """Name of the environment variable holding the broker password."""
    tls: TlsConfig | None = None
    """TLS settings; plain TCP when absent."""
    queue_size: int = Field(1000, ge=1)
    """Hand-off queue between the inference loop and the publisher."""
    reconnect_min_s: float = Field(0.5, gt=0)
    """First reconnect delay."""
    reconnect_max_s: float = Field(30.0, gt=0)
    """Longest reconnect delay."""

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.client_id is not None and any(c in self.client_id for c in "+#/"):
            raise ValueError("client_id must not contain '+', '#' or '/'")
        check_min_max(self, "reconnect_min_s", "reconnect_max_s")
        return self

    def password(self) -> str | None:
        """Read the password from the environment variable named by `password_env`."""
        return secret_from_env(self.password_env, "mqtt.password_env")
