"""Signatures cover the JSON as received (agent.contracts): a newer verifier accepts what an older
signer wrote; a gateway forwards the signer's bytes; an older strict verifier refuses unknown
fields. Real ed25519 keys, no network."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, ValidationError

from agent.contracts.canonical import canonical_json, signed_bytes
from agent.contracts.manifest import Compat, Manifest
from agent.contracts.ota import OtaAction, OtaCommand, SignedManifest, parse_command
from agent.contracts.signed import SignedModel
from agent.trust.ota import sign_command, sign_manifest, verify_command, verify_manifest
from agent.trust.signing import SignatureError, key_id, public_key_b64, sign, verify

RELEASE = Ed25519PrivateKey.generate()
GATEWAY = Ed25519PrivateKey.generate()
RELEASE_KEYS = {key_id(RELEASE): public_key_b64(RELEASE)}
GATEWAY_KEYS = {key_id(GATEWAY): public_key_b64(GATEWAY)}


class OldNote(SignedModel):
    """A signed payload as an older program knows it."""

    text: str = Field(description="Body.")
    key_id: str | None = Field(None, description="Signer.")
    signature: str | None = Field(None, description="Signature.")


class NewNote(OldNote):
    """The same payload one version later: an optional field with a default."""

    priority: int | None = Field(None, description="Added later.")


def manifest() -> Manifest:
    return Manifest(
        name="demo",
        version=3,
        format="onnx",
        sha256="a" * 64,
        length=1000,
        input_size=(320, 320),
        class_names=["person", "car"],
        compat=Compat(),
        created="2026-11-29T10:00:00Z",
    )


def test_newer_verifier_accepts_what_an_older_signer_wrote() -> None:
    """Signed by the old model, verified by the new one with an extra optional field."""
    wire = sign(OldNote(text="hello"), GATEWAY).wire()
    received = NewNote.from_wire(json.loads(json.dumps(wire)))
    assert verify(received, GATEWAY_KEYS) == key_id(GATEWAY)
    # what the old code verified, a re-dump of the parsed model, no longer matches the signature
    redump = received.model_copy(update={"text": "hello"}).wire()
    assert signed_bytes(redump) != signed_bytes(wire)


def test_older_strict_verifier_refuses_a_newer_payload() -> None:
    """extra="forbid": a field the old model does not know is an error, not ignored."""
    wire = sign(NewNote(text="hello", priority=1), GATEWAY).wire()
    with pytest.raises(ValidationError):
        OldNote.from_wire(wire)


def test_a_changed_field_breaks_the_signature() -> None:
    """Tampering with the received JSON is detected."""
    wire = sign(OldNote(text="hello"), GATEWAY).wire()
    wire["text"] = "hullo"
    with pytest.raises(SignatureError):
        verify(OldNote.from_wire(wire), GATEWAY_KEYS)


def test_manifest_from_an_older_signer_without_a_new_optional_field_verifies() -> None:
    """A manifest written before `expires` existed (field absent, not null) still verifies."""
    raw = sign_manifest(manifest(), RELEASE).wire()
    del raw["manifest"]["expires"]
    del raw["signature"]
    raw["signature"] = base64.b64encode(RELEASE.sign(signed_bytes(raw))).decode()
    envelope = SignedManifest.from_wire(json.loads(canonical_json(raw)))
    assert verify_manifest(envelope, RELEASE_KEYS).version == 3


def test_gateway_forwards_the_release_signers_bytes_inside_a_command() -> None:
    """A command built around a received manifest carries it verbatim, and the device verifies
    both signatures from the command's received JSON."""
    raw = sign_manifest(manifest(), RELEASE).wire()
    del raw["manifest"]["expires"]  # the signer's JSON lacks a field the gateway's model has
    del raw["signature"]
    raw["signature"] = base64.b64encode(RELEASE.sign(signed_bytes(raw))).decode()
    now = datetime.now(timezone.utc)
    command = OtaCommand(
        command_id="c1",
        device="jet-0",
        action=OtaAction.DEPLOY,
        manifest=SignedManifest.from_wire(raw),
        artifact_url="http://gw/a",
        sequence=1,
        issued=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        expires=now.replace(year=now.year + 1).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    payload = canonical_json(sign_command(command, GATEWAY).wire())
    assert json.loads(payload)["manifest"] == raw
    received = parse_command(payload)
    assert verify_command(received, GATEWAY_KEYS, RELEASE_KEYS, "jet-0").version == 3
