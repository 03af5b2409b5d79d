"""Config of the on-disk outbox that sits between the inference loop and MQTT.

See docs/delivery.md for what each setting means for delivery guarantees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OutboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
        description="Delete a message only after the gateway acks it on edge/<device>/ack "
        "(PUBACK alone otherwise); needs the gateway's archive.enabled.",
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
