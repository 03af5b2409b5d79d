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
    enabled: bool = Field(True, description="Keep detections on disk until delivery is confirmed.")
    path: Path | None = Field(
        None, description="SQLite file; defaults to <device.state_dir>/outbox.sqlite3."
    )
    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        description="Cap on the outbox files on disk (database + WAL); the oldest messages are "
        "dropped and counted to stay under it.",
    )
    max_rows: int = Field(1_000_000, ge=10, description="Cap on stored messages.")
    inflight: int = Field(
        100, ge=1, le=65535, description="Most unacknowledged messages in flight."
    )
    require_gateway_ack: bool = Field(
        False,
        description="Delete a message only after a signed gateway ack (edge.ack/2) for its "
        "stream covers it on edge/<device>/ack (PUBACK alone otherwise); needs the gateway's "
        "archive.enabled and at least one gateway key (trust.gateway_keys) to verify acks with.",
    )
    gateway_ack_timeout_s: float = Field(
        30.0,
        gt=0,
        description="With require_gateway_ack: replay the unacked messages when the oldest "
        "PUBACKed one has waited this long for a gateway ack.",
    )
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="SQLite synchronous mode. NORMAL (WAL): commits survive a crash or kill -9 "
        "of the daemon, the last ones may be lost on power loss. FULL: fsync per commit, "
        "survives power loss, costs an fsync per batch.",
    )
    batch_max: int = Field(
        256, ge=1, le=10_000, description="Most messages committed in one SQLite transaction."
    )


class MqttConfig(FrozenModel):
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    protocol: Literal["v5", "v311"] = Field("v5", description="MQTT protocol version.")
    client_id: str | None = Field(
        None, description="MQTT client id; defaults to 'edge-agent-<device id>'."
    )
    topic_prefix: SafeId = Field("edge", description="First level of every topic.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    detections_qos: Literal[0, 1] = Field(1, description="QoS of detection messages.")
    publish_empty: bool = Field(
        True, description="Publish a detections message for frames with no detections."
    )
    username: str | None = Field(None, description="Broker user name.")
    password_env: str | None = Field(
        None, description="Name of the environment variable holding the broker password."
    )
    tls: TlsConfig | None = Field(None, description="TLS settings; plain TCP when absent.")
    queue_size: int = Field(
        1000, ge=1, description="Hand-off queue between the inference loop and the publisher."
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay.")

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.client_id is not None and any(c in self.client_id for c in "+#/"):
            raise ValueError("client_id must not contain '+', '#' or '/'")
        check_min_max(self, "reconnect_min_s", "reconnect_max_s")
        return self

    def password(self) -> str | None:
        """Read the password from the environment variable named by `password_env`."""
        return secret_from_env(self.password_env, "mqtt.password_env")
