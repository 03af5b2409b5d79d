"""Config of the on-disk outbox that sits between the inference loop and MQTT."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class OutboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Keep detections on disk until delivery is confirmed.")
    path: Path | None = Field(
        None, description="SQLite file; defaults to <device.state_dir>/outbox.sqlite3."
    )
    max_bytes: int = Field(256 * 1024 * 1024, ge=64 * 1024, description="Cap on stored payload bytes.")
    max_rows: int = Field(1_000_000, ge=10, description="Cap on stored messages.")
    inflight: int = Field(100, ge=1, le=65535, description="Most unacknowledged messages in flight.")
    require_gateway_ack: bool = Field(
        False,
        description="Delete a message only after the gateway acks it on edge/<device>/ack "
        "(PUBACK alone otherwise).",
    )
