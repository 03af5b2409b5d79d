"""Which gateway acks the device believes (pure: no broker, no store).

An ack on `edge/<device>/ack` may delete outbox rows, so only a well-formed `edge.ack/2`
message signed by a trusted gateway key and addressed to this device is accepted
(`agent.contracts.ack`, BRIEF §5). Anything else deletes nothing; the caller logs and counts it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum

from pydantic import ValidationError

from agent.contracts.ack import AckMessage
from agent.trust.signing import PublicKeyLike, SignatureError, verify
from agent.util.errors import ReasonError


class AckRefusal(str, Enum):
    """Why an ack was refused."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    OTHER_DEVICE = "other_device"


class AckRefused(ReasonError[AckRefusal]):
    """An ack that must not delete anything; `reason` says why."""


def accept_ack(
    payload: bytes, device: str, gateway_keys: Mapping[str, PublicKeyLike]
) -> AckMessage:
    """Parse and check one ack payload; raises AckRefused unless it may delete rows.

    The signature is checked over the JSON object as received (`AckMessage.from_wire`).
    """
    try:
        raw = json.loads(payload)
    except ValueError as err:  # not JSON, or not UTF-8
        raise AckRefused(AckRefusal.MALFORMED, _short(err)) from None
    if not isinstance(raw, dict):
        raise AckRefused(AckRefusal.MALFORMED, "not a JSON object")
    try:
        ack = AckMessage.from_wire(raw)
    except ValidationError as err:
        raise AckRefused(AckRefusal.MALFORMED, _short(err)) from None
    try:
        verify(ack, gateway_keys)
    except SignatureError as err:
        raise AckRefused(AckRefusal(err.reason.value), err.detail) from None
    if ack.device != device:
        raise AckRefused(AckRefusal.OTHER_DEVICE, f"ack for device {ack.device}")
    return ack


def _short(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return f"{err.error_count()} validation error(s), first: {err.errors()[0]['msg']}"
    return str(err)[:200]
