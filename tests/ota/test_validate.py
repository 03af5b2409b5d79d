"""Every bad command is rejected with its own reason, in the protocol's order (real ed25519)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from agent.contracts.manifest import Compat
from agent.contracts.ota import (
    OtaAction,
    OtaRejectedError,
    Reason,
    SignedManifest,
    canonical_bytes,
    parse_command,
)
from agent.engines.build import Platform
from agent.ota.validate import Delivery, Ledger, ModelView, validate_command
from agent.trust.ota import sign_command
from tests.ota.conftest import DEVICE, Forge, edit, manifest, to_bytes

ACTIVE = ("demo-yolov8n", 2, "11" * 32)
PREVIOUS = ("demo-yolov8n", 1, "22" * 32)
PAST = datetime.now(timezone.utc) - timedelta(minutes=5)
GEN2 = ModelView(active=ACTIVE, previous=PREVIOUS, active_generation=2)
ORIN = Platform(tensorrt_version="10.3.0.30", gpu_name="Orin (8 SMs)", compute_capability="8.7")


def engine(**compat: str | bool) -> object:
    """A prebuilt TensorRT engine manifest with these compat needs."""
    return manifest(format="engine", compat=Compat(**compat))


class Case:
    """A payload plus the device's state when it arrives."""

    def __init__(
        self,
        payload: bytes,
        ledger: Ledger | None = None,
        busy: bool = False,
        models: ModelView | None = None,
        platform: Platform | None = None,
        allowed: frozenset[str] | None = None,
    ) -> None:
        self.payload = payload
        self.allowed = allowed  # the device's allowed_models pin (None: no pin)
        self.platform = platform  # None: an ONNX Runtime device; else TensorRT on this GPU
        self.ledger = ledger or Ledger(
            last_sequence=10, last_command_id="cmd-10", seen=["cmd-9", "cmd-10"]
        )
        self.busy = busy
        self.models = models or ModelView(active=ACTIVE, previous=PREVIOUS)


def run(forge: Forge, case: Case) -> Delivery:
    cmd = parse_command(case.payload, 64 * 1024)
    keys = forge.keys()
    return validate_command(
        cmd,
        device=DEVICE,
        gateway_keys=keys["gateway_keys"],
        release_keys=keys["release_keys"],
        ledger=case.ledger,
        models=case.models,
        busy=case.busy,
        runnable_formats=frozenset({"onnx"} if case.platform is None else {"onnx", "engine"}),
        max_artifact_bytes=10_000_000,
        platform=case.platform,
        allowed_models=case.allowed,
    ).delivery


def good(f: Forge, **kw: object) -> bytes:
    kw.setdefault("sequence", 11)
    kw.setdefault("m", manifest(version=3))
    return to_bytes(f.command(**kw))  # type: ignore[arg-type]


def _drop_sig(d: dict) -> None:
    d.pop("signature")


def _drop_manifest_sig(f: Forge) -> bytes:
    env = f.envelope(manifest()).model_copy(update={"signature": None})
    return good(f, m=env)


def _edited_manifest(f: Forge) -> bytes:
    """A release-signed manifest edited afterwards, forwarded under a valid gateway signature."""
    env = f.envelope(manifest(version=2))
    forged = SignedManifest.model_validate(
        {
            **env.model_dump(by_alias=True),
            "manifest": manifest(version=2, length=999).model_dump(by_alias=True),
        }
    )
    return good(f, m=forged)


def _swapped_signature(f: Forge) -> bytes:
    """The signature of one valid command pasted onto another."""
    a = f.command(sequence=11, command_id="cmd-a")
    b = f.command(sequence=11, command_id="cmd-b")
    return to_bytes(b.model_copy(update={"signature": a.signature}))


def _reused_id(f: Forge) -> Case:
    """The latest command id again, with other content (signed anew)."""
    first = f.command(sequence=10, command_id="cmd-10")
    ledger = Ledger(last_sequence=10, seen=["cmd-10"]).record(first)
    return Case(good(f, command_id="cmd-10", sequence=12), ledger=ledger)


REJECTED: list[tuple[str, Callable[[Forge], Case], Reason]] = [
    # not JSON at all
    ("not-json", lambda f: Case(b"{deploy please"), Reason.MALFORMED),
    # JSON but not an object
    ("json-array", lambda f: Case(b"[1, 2]"), Reason.MALFORMED),
    # a wrong type (sequence as text)
    (
        "wrong-type",
        lambda f: Case(edit(good(f), lambda d: d.update(sequence="eleven"))),
        Reason.MALFORMED,
    ),
    # an unknown field
    (
        "extra-field",
        lambda f: Case(edit(good(f), lambda d: d.update(force=True))),
        Reason.MALFORMED,
    ),
    # invalid UTF-8
    ("bad-utf8", lambda f: Case(b"\xff\xfe{}"), Reason.MALFORMED),
    # over the 64 KiB limit
    ("oversized-payload", lambda f: Case(b" " * (64 * 1024 + 1)), Reason.PAYLOAD_TOO_LARGE),
    # '../' in the model name
    (
        "dotdot-name",
        lambda f: Case(edit(good(f), lambda d: d["manifest"]["manifest"].update(name="../../etc"))),
        Reason.PATH_TRAVERSAL,
    ),
    # '/' in the command id (it names the staging file)
    (
        "slash-command-id",
        lambda f: Case(edit(good(f), lambda d: d.update(command_id="a/../../b"))),
        Reason.PATH_TRAVERSAL,
    ),
    # no signature at all
    ("unsigned", lambda f: Case(edit(good(f), _drop_sig)), Reason.UNSIGNED),
    # signed by a key the device does not trust
    ("unknown-key", lambda f: Case(good(f, key=f.stranger)), Reason.UNKNOWN_KEY),
    # signed by the release key: trusted for manifests, not for commands
    ("release-key-signs-command", lambda f: Case(good(f, key=f.release)), Reason.UNKNOWN_KEY),
    # a field edited after signing
    (
        "edited-url",
        lambda f: Case(edit(good(f), lambda d: d.update(artifact_url="http://evil.example/x"))),
        Reason.BAD_SIGNATURE,
    ),
    # the signature of another command
    ("swapped-signature", lambda f: Case(_swapped_signature(f)), Reason.BAD_SIGNATURE),
    # for another device
    ("wrong-device", lambda f: Case(good(f, device="dev-2")), Reason.WRONG_DEVICE),
    # past its expiry
    (
        "expired-command",
        lambda f: Case(good(f, now=PAST - timedelta(hours=2), expires=PAST)),
        Reason.EXPIRED_COMMAND,
    ),
    # an older command id delivered again
    ("replayed", lambda f: Case(good(f, command_id="cmd-9", sequence=9)), Reason.REPLAYED),
    # the latest id reused for other content
    ("reused-id", _reused_id, Reason.REPLAYED),
    # a new id with an older sequence number
    (
        "older-sequence",
        lambda f: Case(good(f, sequence=5, command_id="cmd-new")),
        Reason.OLD_SEQUENCE,
    ),
    # a new id with the same sequence number as the last accepted
    (
        "same-sequence",
        lambda f: Case(good(f, sequence=10, command_id="cmd-new")),
        Reason.OLD_SEQUENCE,
    ),
    # another command in progress
    ("busy", lambda f: Case(good(f), busy=True), Reason.BUSY),
    # manifest without a release signature
    ("manifest-unsigned", lambda f: Case(_drop_manifest_sig(f)), Reason.MANIFEST_UNSIGNED),
    # manifest signed by an untrusted key
    (
        "manifest-unknown-key",
        lambda f: Case(good(f, m=f.envelope(manifest(), f.stranger))),
        Reason.MANIFEST_UNKNOWN_KEY,
    ),
    # manifest signed by the gateway key (wrong role)
    (
        "manifest-gateway-key",
        lambda f: Case(good(f, m=f.envelope(manifest(), f.gateway))),
        Reason.MANIFEST_UNKNOWN_KEY,
    ),
    # a manifest field edited after the release signature
    ("manifest-edited", lambda f: Case(_edited_manifest(f)), Reason.BAD_MANIFEST_SIGNATURE),
    # manifest past its expiry
    (
        "manifest-expired",
        lambda f: Case(good(f, m=manifest(expires="2026-01-01T00:00:00Z"))),
        Reason.EXPIRED_MANIFEST,
    ),
    # a lower version than the active one
    (
        "lower-version",
        lambda f: Case(
            good(f, m=manifest(version=1)),
            models=ModelView(active=("demo-yolov8n", 3, "33" * 32), previous=None),
        ),
        Reason.LOWER_VERSION,
    ),
    # the same version as the active one
    ("same-version", lambda f: Case(good(f, m=manifest(version=2))), Reason.LOWER_VERSION),
    # below the highest version ever committed for that name
    (
        "below-committed",
        lambda f: Case(
            good(f, m=manifest(version=4)),
            ledger=Ledger(last_sequence=10, max_version={"demo-yolov8n": 5}),
        ),
        Reason.LOWER_VERSION,
    ),
    # an old manifest under another name while a generation-2 detector runs
    (
        "other-name-same-generation",
        lambda f: Case(good(f, m=manifest(name="yolo-2023", version=1, generation=2)), models=GEN2),
        Reason.LOWER_VERSION,
    ),
    # a newer version of the running name that goes back a generation
    (
        "same-name-lower-generation",
        lambda f: Case(good(f, m=manifest(version=3, generation=1)), models=GEN2),
        Reason.LOWER_VERSION,
    ),
    # another name below the generation committed earlier (the running model has no manifest)
    (
        "other-name-below-committed-generation",
        lambda f: Case(
            good(f, m=manifest(name="other", version=1, generation=4)),
            ledger=Ledger(last_sequence=10, max_generation={"detector": 4}),
        ),
        Reason.LOWER_VERSION,
    ),
    # a name outside the device's pin, even with a higher generation
    (
        "not-pinned",
        lambda f: Case(
            good(f, m=manifest(name="other", version=1, generation=9)),
            allowed=frozenset({"demo-yolov8n"}),
        ),
        Reason.MODEL_NOT_ALLOWED,
    ),
    # a rollback to a kept model whose name is outside the pin
    (
        "rollback-not-pinned",
        lambda f: Case(
            good(f, m=manifest(version=1, sha256="22" * 32), action=OtaAction.ROLLBACK, url=None),
            allowed=frozenset({"other"}),
        ),
        Reason.MODEL_NOT_ALLOWED,
    ),
    # a Florence-2 model sent to the detector's OTA
    (
        "florence2-kind",
        lambda f: Case(good(f, m=manifest(name="florence", version=1, kind="florence2"))),
        Reason.INCOMPATIBLE,
    ),
    # a rollback to a version the device does not keep
    (
        "rollback-not-kept",
        lambda f: Case(
            good(f, m=manifest(version=1, sha256="99" * 32), action=OtaAction.ROLLBACK, url=None)
        ),
        Reason.ROLLBACK_UNAVAILABLE,
    ),
    # a rollback with nothing kept
    (
        "rollback-nothing-kept",
        lambda f: Case(
            good(f, m=manifest(version=1, sha256="22" * 32), action=OtaAction.ROLLBACK, url=None),
            models=ModelView(active=ACTIVE, previous=None),
        ),
        Reason.ROLLBACK_UNAVAILABLE,
    ),
    # a prebuilt TensorRT engine on an ONNX Runtime device
    ("engine-on-cpu", lambda f: Case(good(f, m=manifest(format="engine"))), Reason.INCOMPATIBLE),
    # an engine built for another GPU (Xavier, sm_72) on an Orin (sm_87)
    (
        "engine-other-gpu",
        lambda f: Case(good(f, m=engine(gpu_arch="sm_72")), platform=ORIN),
        Reason.INCOMPATIBLE,
    ),
    # an engine that needs a newer TensorRT than the device has
    (
        "engine-newer-tensorrt",
        lambda f: Case(good(f, m=engine(min_tensorrt="10.7")), platform=ORIN),
        Reason.INCOMPATIBLE,
    ),
    # an engine whose compat names no exact TensorRT version nor device model
    (
        "engine-loose-compat",
        lambda f: Case(good(f, m=engine(min_tensorrt="10.3", gpu_arch="sm_87")), platform=ORIN),
        Reason.INCOMPATIBLE,
    ),
    # an engine built by another TensorRT patch release
    (
        "engine-other-tensorrt-build",
        lambda f: Case(
            good(f, m=engine(tensorrt="10.3.0.26", gpu_name="Orin (8 SMs)")), platform=ORIN
        ),
        Reason.INCOMPATIBLE,
    ),
    # an AGX Orin engine (16 SMs) on an Orin Nano (8 SMs): same sm_87, another device model
    (
        "engine-other-device-model",
        lambda f: Case(
            good(f, m=engine(tensorrt="10.3.0.30", gpu_name="Orin (16 SMs)")), platform=ORIN
        ),
        Reason.INCOMPATIBLE,
    ),
    # an artifact larger than the device accepts
    ("huge-artifact", lambda f: Case(good(f, m=manifest(length=10**9))), Reason.OVERSIZED),
]


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in REJECTED], ids=[i for i, _, _ in REJECTED]
)
def test_bad_command_rejected_with_its_reason(
    forge: Forge, make: Callable[[Forge], Case], reason: Reason
) -> None:
    """A bad command raises OtaRejectedError carrying its own distinct reason."""
    with pytest.raises(OtaRejectedError) as info:
        run(forge, make(forge))
    assert info.value.reason is reason, info.value.detail


def test_table_covers_every_command_reason() -> None:
    """Each reason a command can be rejected with before any download has a case above."""
    command_phase = {
        Reason.MALFORMED,
        Reason.PAYLOAD_TOO_LARGE,
        Reason.PATH_TRAVERSAL,
        Reason.UNSIGNED,
        Reason.UNKNOWN_KEY,
        Reason.BAD_SIGNATURE,
        Reason.WRONG_DEVICE,
        Reason.EXPIRED_COMMAND,
        Reason.REPLAYED,
        Reason.OLD_SEQUENCE,
        Reason.BUSY,
        Reason.MANIFEST_UNSIGNED,
        Reason.MANIFEST_UNKNOWN_KEY,
        Reason.BAD_MANIFEST_SIGNATURE,
        Reason.EXPIRED_MANIFEST,
        Reason.LOWER_VERSION,
        Reason.ROLLBACK_UNAVAILABLE,
        Reason.MODEL_NOT_ALLOWED,
        Reason.INCOMPATIBLE,
        Reason.OVERSIZED,
    }
    assert {r for _, _, r in REJECTED} == command_phase


ACCEPTED: list[tuple[str, Callable[[Forge], Case], Delivery]] = [
    # a valid deploy of a higher version
    ("deploy", lambda f: Case(good(f)), Delivery.NEW),
    # a signed rollback to exactly the kept previous model
    (
        "rollback",
        lambda f: Case(
            good(f, m=manifest(version=1, sha256="22" * 32), action=OtaAction.ROLLBACK, url=None)
        ),
        Delivery.NEW,
    ),
    # a prebuilt engine built on this very platform (exact TensorRT, device model, sm_87)
    (
        "engine-compatible",
        lambda f: Case(
            good(f, m=engine(tensorrt="10.3.0.30", gpu_name="Orin (8 SMs)", gpu_arch="sm_87")),
            platform=ORIN,
        ),
        Delivery.NEW,
    ),
    # another model name starts its own version line (no generation floor known here)
    ("other-name", lambda f: Case(good(f, m=manifest(name="other", version=1))), Delivery.NEW),
    # another name with a generation above the running detector's
    (
        "other-name-higher-generation",
        lambda f: Case(good(f, m=manifest(name="yolo-2027", version=1, generation=3)), models=GEN2),
        Delivery.NEW,
    ),
    # a newer version of the running name in the same generation
    (
        "same-name-same-generation",
        lambda f: Case(good(f, m=manifest(version=3, generation=2)), models=GEN2),
        Delivery.NEW,
    ),
    # a pinned name may replace another pinned name without a higher generation
    (
        "pinned-other-name",
        lambda f: Case(
            good(f, m=manifest(name="night", version=1)),
            models=GEN2,
            allowed=frozenset({"demo-yolov8n", "night"}),
        ),
        Delivery.NEW,
    ),
]


@pytest.mark.parametrize(
    ("make", "delivery"), [(m, d) for _, m, d in ACCEPTED], ids=[i for i, _, _ in ACCEPTED]
)
def test_good_command_accepted(
    forge: Forge, make: Callable[[Forge], Case], delivery: Delivery
) -> None:
    """A valid command passes every check."""
    assert run(forge, make(forge)) is delivery


def test_redelivery_of_latest_command_is_a_duplicate(forge: Forge) -> None:
    """The same command delivered twice is recognised, not redone and not rejected."""
    cmd = forge.command(sequence=11)
    ledger = Ledger(last_sequence=10).record(cmd)
    assert run(forge, Case(to_bytes(cmd), ledger=ledger, busy=True)) is Delivery.DUPLICATE


def test_command_signature_covers_nested_manifest_signature(forge: Forge) -> None:
    """Swapping the manifest's signature inside a signed command breaks the command signature."""
    cmd = forge.command(sequence=11)
    other = forge.envelope(manifest(version=4))
    payload = edit(to_bytes(cmd), lambda d: d["manifest"].update(signature=other.signature))
    with pytest.raises(OtaRejectedError) as info:
        run(forge, Case(payload))
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_canonical_form_is_sorted_compact_utf8(forge: Forge) -> None:
    """The signed bytes are sorted-key compact JSON without the signature field."""
    cmd = forge.command(sequence=11, m=manifest(class_names=["personne", "voiture é"]))
    raw = canonical_bytes(cmd)
    data = json.loads(raw)
    assert "signature" not in data and data["key_id"] == cmd.key_id
    assert (
        raw == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert "é".encode() in raw


def test_resigning_with_gateway_key_keeps_manifest_check(forge: Forge) -> None:
    """A gateway cannot launder an edited manifest by signing the command itself."""
    cmd = forge.command(sequence=11)
    tampered = cmd.manifest.model_copy(
        update={"manifest": cmd.manifest.manifest.model_copy(update={"version": 99})}
    )
    resigned = sign_command(cmd.model_copy(update={"manifest": tampered}), forge.gateway)
    with pytest.raises(OtaRejectedError) as info:
        run(forge, Case(to_bytes(resigned)))
    assert info.value.reason is Reason.BAD_MANIFEST_SIGNATURE


def test_signature_is_base64_of_64_bytes(forge: Forge) -> None:
    """Signatures are standard base64 of a 64-byte ed25519 signature."""
    cmd = forge.command(sequence=11)
    assert cmd.signature is not None and len(base64.b64decode(cmd.signature)) == 64


def test_generations_count_per_kind() -> None:
    """A committed detector generation sets no floor for Florence-2 models, and vice versa."""
    ledger = Ledger().committed("yolo", 5, "detector", 7)
    assert ledger.generation_floor("detector") == 7
    assert ledger.generation_floor("florence2") is None
    assert Ledger().committed("fl", 1, "florence2", 3).generation_floor("detector") is None


def test_ledger_before_generations_counts_as_generation_zero() -> None:
    """A ledger written before generations existed still sets a detector floor of 0."""
    assert Ledger(max_version={"yolo": 5}).generation_floor("detector") == 0
    assert Ledger().generation_floor("detector") is None


def test_manifest_defaults_keep_old_canonical_form(forge: Forge) -> None:
    """A manifest at the default kind and generation signs the same bytes as before they existed."""
    env = forge.envelope(manifest())
    data = json.loads(canonical_bytes(env))
    assert "kind" not in data["manifest"] and "generation" not in data["manifest"]
    bumped = json.loads(canonical_bytes(forge.envelope(manifest(generation=2, kind="florence2"))))
    assert bumped["manifest"]["generation"] == 2 and bumped["manifest"]["kind"] == "florence2"
