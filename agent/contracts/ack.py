"""Application acks from the gateway on `edge/<device>/ack` (schema `edge.ack/2`).

The gateway sends one after it has durably stored (fsynced) messages of the device. Each entry
is cumulative per stream `(boot_id, camera, stream)`: every message of that stream with
`seq <= seq_upto` is stored, so the device may delete those rows from its outbox (only rows the
broker already acknowledged with PUBACK). The whole message is signed with a **gateway key**
(ed25519 over the canonical form of the received JSON without `signature`, see
`agent.contracts.canonical`); the device verifies it against the gateway keys of its `trust:`
config section and ignores (logs and counts) anything unsigned, badly signed, signed by an
unknown key or addressed to another device, so a client that can publish on the topic still
cannot make a device delete anything.

A replayed ack is harmless: it only says again that messages up to `seq_upto` were stored.
Example (signature shortened):

    {"schema": "edge.ack/2", "device": "jetson-01", "issued": "2026-11-29T10:00:00.000Z",
     "acks": [{"boot_id": "3f2a9c0d11aa22bb", "camera": "front", "stream": "detections",
               "seq_upto": 1234}],
     "key_id": "0123456789abcdef", "signature": "...=="}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.contracts.ids import SafeId
from agent.contracts.signed import KeyId, Signature, SignedModel
from agent.contracts.streams import BootId, Stream
from agent.util.models import FrozenModel

ACK_SCHEMA = "edge.ack/2"
MAX_ACK_ENTRIES = 10_000


class AckEntry(FrozenModel):
    """One cumulative ack for one stream of one boot."""

    boot_id: BootId
    """boot_id of the messages acked."""
    camera: SafeId
    """Camera id of the messages acked."""
    stream: Stream
    """Stream of the messages acked: detections|events|florence2."""
    seq_upto: int = Field(ge=0)
    """Every seq <= this one (of that boot, camera and stream) is stored."""


class AckMessage(SignedModel):
    """Payload on edge/<device>/ack, signed by a gateway key."""

    schema_: Literal["edge.ack/2"] = Field(ACK_SCHEMA, alias="schema")
    """Payload schema id."""
    device: SafeId
    """Device the acks are for; must match the receiving device."""
    issued: str
    """When the gateway signed the ack, UTC RFC 3339 (informative)."""
    acks: list[AckEntry] = Field(min_length=1, max_length=MAX_ACK_ENTRIES)
    """Cumulative acks, one per stream."""
    key_id: KeyId | None = None
    """Gateway key id (16 hex digits of sha256)."""
    signature: Signature | None = None
    """Base64 ed25519 signature over the canonical form without `signature`."""
