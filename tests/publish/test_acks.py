"""Which acks the device believes: only edge.ack/2, signed by a trusted gateway key, for it."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.publish.acks import AckRefusal, AckRefused, accept_ack
from agent.trust.signing import key_id
from tests.publish.support import BOOT, DEVICE, GATEWAY_KEY, GATEWAY_KEYS, ack_bytes

ROGUE = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)


def _forged_with_trusted_key_id() -> bytes:
    """Signed by a rogue key but claiming the trusted gateway key's id."""
    raw = json.loads(ack_bytes(DEVICE, [(BOOT, "cam1", 5)], key=ROGUE))
    raw["key_id"] = key_id(GATEWAY_KEY)
    return json.dumps(raw).encode()


def _tampered() -> bytes:
    """Correctly signed, then seq_upto raised in transit."""
    raw = json.loads(ack_bytes(DEVICE, [(BOOT, "cam1", 5)]))
    raw["acks"][0]["seq_upto"] = 10**9
    return json.dumps(raw).encode()


def _old_format() -> bytes:
    """The edge.ack/1 a forger could send before: no signature, no stream."""
    return json.dumps(
        {
            "schema": "edge.ack/1",
            "device": DEVICE,
            "acks": [{"boot_id": BOOT, "camera": "cam1", "seq_upto": 10**9}],
        }
    ).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", AckRefusal.MALFORMED),  # garbage
        (b"[1, 2]", AckRefusal.MALFORMED),  # JSON but not an object
        (_old_format(), AckRefusal.MALFORMED),  # edge.ack/1: unsigned old schema
        (ack_bytes(DEVICE, [(BOOT, "cam1", 5)], key=None), AckRefusal.UNSIGNED),  # no signature
        (ack_bytes(DEVICE, [(BOOT, "cam1", 5)], key=ROGUE), AckRefusal.UNKNOWN_KEY),  # rogue key
        (_forged_with_trusted_key_id(), AckRefusal.BAD_SIGNATURE),  # rogue key, trusted key id
        (_tampered(), AckRefusal.BAD_SIGNATURE),  # changed after signing
        (ack_bytes("dev-b", [(BOOT, "cam1", 5)]), AckRefusal.OTHER_DEVICE),  # another device's
    ],
)
def test_refused_acks_say_why(payload: bytes, reason: AckRefusal) -> None:
    """Every ack that must not delete anything is refused with its own reason."""
    with pytest.raises(AckRefused) as info:
        accept_ack(payload, DEVICE, GATEWAY_KEYS)
    assert info.value.reason == reason


def test_signed_ack_for_this_device_is_accepted() -> None:
    """An ack signed by the trusted gateway key, for this device, comes back parsed."""
    ack = accept_ack(
        ack_bytes(DEVICE, [(BOOT, "cam1", 5)], stream="florence2"), DEVICE, GATEWAY_KEYS
    )
    assert [(e.boot_id, e.camera, e.stream.value, e.seq_upto) for e in ack.acks] == [
        (BOOT, "cam1", "florence2", 5)
    ]


def test_signature_covers_the_received_json_not_a_re_dump() -> None:
    """A signed ack re-serialised with other key order and spacing still verifies."""
    raw = json.loads(ack_bytes(DEVICE, [(BOOT, "cam1", 5)]))
    reordered = json.dumps(dict(reversed(list(raw.items()))), indent=2).encode()
    assert accept_ack(reordered, DEVICE, GATEWAY_KEYS).device == DEVICE
