"""Application acks from the gateway on `edge/<device>/ack` (used with `require_gateway_ack`).

The gateway sends one after it has durably stored detections; each entry is cumulative per
(boot_id, camera): every message of that camera and boot with `seq <= seq_upto` that the broker
already acknowledged (PUBACK) is deleted from the outbox. Messages not yet PUBACKed are never
deleted by an ack, so a late message with a lower seq (a florence2 refinement carries the seq
of the frame it refines) is still delivered. Example:

    {"schema": "edge.ack/1", "device": "jetson-01",
     "acks": [{"boot_id": "3f2a...", "camera": "front", "seq_upto": 1234}]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.contracts.ids import SafeId

ACK_SCHEMA = "edge.ack/1"


class AckEntry(BaseModel):
    """One cumulative ack for one camera of one boot."""

    model_config = ConfigDict(extra="forbid")

    boot_id: str = Field(min_length=1, max_length=128, description="boot_id of the messages acked.")
    camera: SafeId = Field(description="Camera id of the messages acked.")
    seq_upto: int = Field(
        ge=0, description="Every seq <= this one (of that boot and camera) is stored."
    )


class AckMessage(BaseModel):
    """Payload on edge/<device>/ack, sent by the gateway identity only (broker ACL)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["edge.ack/1"] = Field(
        ACK_SCHEMA, alias="schema", description="Payload schema id."
    )
    device: SafeId = Field(description="Device the acks are for; must match the receiving device.")
    acks: list[AckEntry] = Field(min_length=1, max_length=10_000, description="Cumulative acks.")
