"""Streams: everything the outbox carries belongs to `(device, boot_id, camera, stream)`.

Each stream's `seq` starts at 0 at boot and grows by exactly 1 per message; a camera id never
restarts a stream within a boot. Acks, the gateway archive's key, replay and the device's
low-water mark (`oldest_unacked_seq`) are all per stream; consumers dedup by
`(device, camera, boot_id, stream, seq)`.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from pydantic import StringConstraints


class Stream(str, Enum):
    """The streams a camera has within one boot."""

    DETECTIONS = "detections"
    EVENTS = "events"
    FLORENCE2 = "florence2"


BOOT_ID_PATTERN = r"^[0-9a-f]{8,64}$"
BootId = Annotated[str, StringConstraints(pattern=BOOT_ID_PATTERN)]
"""A boot id: 8-64 lowercase hex digits (the daemon draws 16 at start)."""
