"""Wire formats of OTA model updates between the gateway and the device.

Three payloads cross the wire (documented in `docs/ota.md`):

* `SignedManifest` - an `agent.contracts.manifest.Manifest` wrapped with the id of the
  **release key** that signed it and an ed25519 signature.
* `OtaCommand` - a deploy or rollback order for one device, carrying the signed manifest,
  signed as a whole by the **gateway key**. Published on `edge/<device>/ota/command`.
* `OtaStateMessage` - the device's position in the OTA state machine, published retained on
  `edge/<device>/ota/state`.

Signatures cover `canonical_bytes(model)`: the canonical form (`agent.contracts.canonical`) of
the JSON object *as received* (`SignedModel.from_wire`), or as built on the signing side, without
its `signature` field. A newer verifier thus accepts what an older signer wrote. Each signed
type carries a distinct `schema` value, so a signature over a manifest can never be replayed
as a signature over a command.

Pure pydantic and hashing: no disk, no network. Signing and verifying live in
`agent.trust.ota`; the order of checks lives in `agent.ota.validate`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from agent.contracts.canonical import canonical_json
from agent.contracts.ids import SafeId
from agent.contracts.manifest import Manifest
from agent.contracts.signed import KeyId, Signature, SignedModel
from agent.util.models import FrozenModel

SIGNED_MANIFEST_SCHEMA = "edge.signed-manifest/1"
COMMAND_SCHEMA = "edge.ota-command/1"
STATE_SCHEMA = "edge.ota-state/1"

COMMAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_COMMAND_ID_RE = re.compile(COMMAND_ID_PATTERN)

MAX_COMMAND_BYTES = 64 * 1024
"""Default limit of a command payload; the device config may lower it."""


class OtaRejectedError(Exception):
    """An OTA input was refused; `reason` is the machine-readable code published in ota/state."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


OtaRejected = OtaRejectedError
"""Short alias used throughout the OTA code and by the gateway."""


class Reason(str, Enum):
    """Why a command was rejected, failed or rolled back. One value per distinct cause.

    Compare as enums; the string value is what `ota/state` carries in `reason`.
    """

    # -- the command payload itself
    MALFORMED = "malformed"  # not JSON, wrong types, missing or unknown fields
    PAYLOAD_TOO_LARGE = "payload_too_large"  # command payload over the configured byte limit
    PATH_TRAVERSAL = "path_traversal"  # '/', '\\', '..' or similar in a name or id
    # -- the command signature (gateway key)
    UNSIGNED = "unsigned"  # command has no signature or no key id
    UNKNOWN_KEY = "unknown_key"  # command signed by a key id the device does not trust
    BAD_SIGNATURE = "bad_signature"  # command signature does not verify (edited or forged)
    # -- the command's addressing and freshness
    WRONG_DEVICE = "wrong_device"  # command for another device
    EXPIRED_COMMAND = "expired_command"  # command past its `expires`
    REPLAYED = "replayed"  # a command id this device already handled (not the latest)
    OLD_SEQUENCE = "old_sequence"  # sequence not greater than the last accepted one
    BUSY = "busy"  # another command is in progress
    LEDGER_UNREADABLE = "ledger_unreadable"  # the command ledger is damaged: operator must clear
    # -- the manifest signature (release key)
    MANIFEST_UNSIGNED = "manifest_unsigned"  # manifest has no signature or no key id
    MANIFEST_UNKNOWN_KEY = "manifest_unknown_key"  # manifest key id not trusted as release key
    BAD_MANIFEST_SIGNATURE = "bad_manifest_signature"  # manifest edited after signing / forged
    EXPIRED_MANIFEST = "expired_manifest"  # manifest past its `expires`
    # -- what the manifest asks for
    LOWER_VERSION = "lower_version"  # deploy of a version not above the active one
    ROLLBACK_UNAVAILABLE = "rollback_unavailable"  # rollback to a version the device does not keep
    MODEL_NOT_ALLOWED = "model_not_allowed"  # model name not in the device's allowed_models pin
    INCOMPATIBLE = "incompatible"  # format/compat not runnable on this device
    # -- the download
    ARTIFACT_MISMATCH = (
        "artifact_mismatch"  # server's artifact is not the manifest's (size/address)
    )
    TRUNCATED = "truncated"  # body ended before `length` bytes, resume attempts exhausted
    OVERSIZED = "oversized"  # server sent more than `length` bytes
    HASH_MISMATCH = "hash_mismatch"  # `length` bytes received, sha256 differs
    DOWNLOAD_STALLED = "download_stalled"  # no byte within the per-read timeout, retries exhausted
    DEADLINE_EXCEEDED = "deadline_exceeded"  # whole download slower than its overall deadline
    DOWNLOAD_FAILED = "download_failed"  # HTTP error status, refused connection, bad URL
    DISK_FULL = "disk_full"  # not enough free space before, or ENOSPC during, the download
    # -- activation
    BUILD_FAILED = "build_failed"  # TensorRT engine build failed
    BAD_ARCHIVE = "bad_archive"  # a multi-file artifact (tar) is unsafe or broken: path tricks,
    # links, special files, over its size cap, not a tar, or no loadable model inside
    LOAD_FAILED = "load_failed"  # the new model does not load
    VALIDATION_FAILED = "validation_failed"  # crashes / garbage / too slow on recent frames
    SWAP_FAILED = "swap_failed"  # the pipeline did not take the new model in time
    PROBATION_FAILED = "probation_failed"  # health after the swap below thresholds
    CRASH_LOOP = "crash_loop"  # the daemon crashed too often on probation or after a commit
    INTERRUPTED = "interrupted"  # the daemon stopped (or was killed) before the swap
    INTERNAL_ERROR = "internal_error"  # a bug on the device; the detail says where


RejectReason = Reason
FailReason = Reason


class OtaAction(str, Enum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class OtaState(str, Enum):
    """Positions of the device's OTA state machine (see `agent.ota.machine`)."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    BUILDING = "building"
    LOADING = "loading"
    VALIDATING = "validating"
    ACTIVE = "active"  # swapped in, on probation
    COMMITTED = "committed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        """True for the states a command ends in (exactly one per command)."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {OtaState.COMMITTED, OtaState.FAILED, OtaState.ROLLED_BACK, OtaState.REJECTED}
)
REASON_STATES = frozenset({OtaState.FAILED, OtaState.ROLLED_BACK, OtaState.REJECTED})


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 UTC time ('Z' or an explicit offset required) into an aware datetime."""
    if not isinstance(value, str):
        raise ValueError("expected an RFC 3339 string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {value!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"time {value!r} has no offset; use UTC with 'Z'")
    return dt.astimezone(timezone.utc)


def format_rfc3339(ts: float) -> str:
    """Epoch seconds -> UTC RFC 3339 with milliseconds, e.g. 2026-11-27T10:52:40.123Z."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def check_command_id(value: str) -> str:
    """Return `value` if it is a valid command id (safe as a file name), else raise ValueError."""
    if not isinstance(value, str) or not _COMMAND_ID_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid command id {value!r}: 1-64 of [A-Za-z0-9._-], starting with a letter or "
            "digit, no '..'"
        )
    return value


def check_rfc3339(value: str) -> str:
    """Return `value` unchanged (a signature covers it as written) if it is an RFC 3339 time."""
    parse_rfc3339(value)
    return value


# -- the envelope every gateway command carries (OTA commands and config pushes alike)

CommandId = Annotated[str, AfterValidator(check_command_id)]
"""A command id: 1-64 of [A-Za-z0-9._-], starting with a letter or digit, no '..'."""
CommandIssued = Annotated[
    str,
    AfterValidator(check_rfc3339),
    Field(description="When the gateway signed the command, UTC RFC 3339."),
]
CommandExpires = Annotated[
    str,
    AfterValidator(check_rfc3339),
    Field(description="After this time (UTC RFC 3339) the command is refused."),
]
GatewayKeyId = Annotated[
    KeyId | None,
    Field(description="Gateway key id: first 16 hex digits of sha256 of the raw public key."),
]
CommandSignature = Annotated[
    Signature | None,
    Field(description="Base64 ed25519 signature over canonical_bytes(command without signature)."),
]


class SignedManifest(SignedModel):
    """A manifest signed by a release key (kept off the device)."""

    schema_: Literal["edge.signed-manifest/1"] = Field(SIGNED_MANIFEST_SCHEMA, alias="schema")
    """Envelope schema id."""
    manifest: Manifest
    """The signed manifest (contracts.manifest.Manifest)."""
    key_id: KeyId | None = None
    """Release key id: first 16 hex digits of sha256 of the raw public key."""
    signature: Signature | None = None
    """Base64 ed25519 signature over canonical_bytes(envelope without signature)."""


class SignedCommand(SignedModel):
    """What every command the gateway signs for one device carries (an OTA command, a config
    push): its id, target, place in the device's sequence, validity and the gateway signature.
    The device checks these the same way for every kind (`agent.ota.validate`)."""

    schema_: str = Field(alias="schema")
    """Command schema id."""
    command_id: CommandId
    """Unique id of this command ([A-Za-z0-9._-], 1-64); a redelivery keeps it."""
    device: SafeId
    """Target device id; any other device rejects it."""
    sequence: int = Field(ge=1)
    """Per-device command counter; must exceed the last one accepted."""
    issued: CommandIssued
    expires: CommandExpires
    key_id: GatewayKeyId = None
    signature: CommandSignature = None


class OtaCommand(SignedCommand):
    """A deploy or rollback order for one device, signed by a gateway key."""

    schema_: Literal["edge.ota-command/1"] = Field(COMMAND_SCHEMA, alias="schema")
    """Command schema id."""
    action: OtaAction
    """deploy: install the manifest's model; rollback: return to the previous version the device
    keeps."""
    manifest: SignedManifest
    """The release-signed manifest of the model to run after this command."""
    artifact_url: str | None = Field(None, max_length=2048)
    """http(s) URL of the artifact (Range requests supported); required for deploy, ignored for
    rollback."""

    @field_validator("artifact_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("artifact_url must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _deploy_needs_url(self) -> OtaCommand:
        if self.action is OtaAction.DEPLOY and not self.artifact_url:
            raise ValueError("a deploy command needs artifact_url")
        return self


class ModelId(FrozenModel):
    """Which model a state is about."""

    name: str
    """Model name from its manifest."""
    version: int = Field(ge=0)
    """Model version, monotonic per name."""
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the model artifact."""


class Progress(FrozenModel):
    """Download progress."""

    bytes: int = Field(ge=0)
    """Bytes of the artifact received so far."""
    total: int = Field(ge=0)
    """Artifact length from the manifest."""


class SwapReport(FrozenModel):
    """How the swap went."""

    mode: Literal["hot", "pause"]
    """hot: beside the old model; pause: unload first."""
    pause_ms: float = Field(ge=0)
    """Time inference stood still (pause mode); ~0 for a hot swap."""
    load_ms: float = Field(ge=0)
    """Time to load and warm the new model."""


class OtaStateMessage(FrozenModel):
    """Retained on edge/<device>/ota/state: where the device is in the OTA state machine."""

    schema_: Literal["edge.ota-state/1"] = Field(STATE_SCHEMA, alias="schema")
    """Payload schema id."""
    device: str
    """Device id."""
    state: OtaState
    """State machine position."""
    command_id: str | None = None
    """Command this state belongs to; null when idle with no history."""
    action: OtaAction | None = None
    """Action of that command."""
    model: ModelId | None = None
    """The model the command is about (target of deploy or rollback)."""
    active_model: ModelId | None = None
    """The model running on the device when this state was published."""
    progress: Progress | None = None
    """Download progress while downloading."""
    reason: Reason | None = None
    """Why, for failed / rolled_back / rejected; null otherwise."""
    detail: str | None = Field(None, max_length=2000)
    """Human-readable explanation."""
    swap: SwapReport | None = None
    """Swap measurements, from active on."""
    probation_ends: str | None = None
    """While `active` after a deploy: when probation ends at the earliest (UTC RFC 3339); the device
    then commits if health holds, or extends probation (up to 3x) until it saw enough frames. Null
    in every other state and from older devices."""
    ts: str
    """When this state was entered, UTC RFC 3339 with ms."""
    last_sequence: int | None = Field(None, ge=0)
    """Highest command sequence the device has accepted (from its ledger); the gateway numbers its
    next command above it, so a gateway restored from an old backup resumes without manual edits.
    Null from devices that do not report it."""

    @model_validator(mode="after")
    def _reason_iff_bad_terminal(self) -> OtaStateMessage:
        if (self.reason is not None) != (self.state in REASON_STATES):
            raise ValueError(
                "reason is required for failed/rolled_back/rejected and forbidden otherwise"
            )
        return self


# ---------------------------------------------------------------------------------------------
# canonical form


def canonical_bytes(model: SignedManifest | OtaCommand) -> bytes:
    """The bytes a signature covers: the received (or built) JSON without `signature`.

    The nested signed manifest inside a command is included whole (with its own signature),
    exactly as the release key's signer wrote it, so the gateway key vouches for exactly which
    release signature it forwarded.
    """
    return model.signed_part()


def command_digest(command: SignedCommand) -> str:
    """SHA-256 hex of the full command (signature included): tells redelivery from reuse."""
    data = command.model_dump(mode="json", by_alias=True)
    return hashlib.sha256(canonical_json(data)).hexdigest()


def state_bytes(message: OtaStateMessage) -> bytes:
    """Serialise a state message for MQTT (compact JSON, by alias, nulls kept)."""
    return canonical_json(message.model_dump(mode="json", by_alias=True))


# ---------------------------------------------------------------------------------------------
# parsing untrusted command payloads

_TRAVERSAL_RE = re.compile(r"(^\.|\.\.|/|\\|\x00)")


def _looks_like_path_trick(value: object) -> bool:
    return isinstance(value, str) and bool(_TRAVERSAL_RE.search(value))


def command_object(payload: bytes, max_bytes: int = MAX_COMMAND_BYTES) -> dict[str, Any]:
    """The JSON object of an untrusted command payload (any gateway command). Raises
    OtaRejectedError: `payload_too_large` (more than `max_bytes`), `malformed` (not UTF-8
    JSON, or not an object)."""
    if len(payload) > max_bytes:
        raise OtaRejectedError(
            Reason.PAYLOAD_TOO_LARGE, f"command payload is {len(payload)} bytes, limit {max_bytes}"
        )
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OtaRejectedError(Reason.MALFORMED, f"not UTF-8 JSON: {err}") from None
    if not isinstance(data, dict):
        raise OtaRejectedError(Reason.MALFORMED, "command must be a JSON object")
    return data


def parse_command(payload: bytes, max_bytes: int = MAX_COMMAND_BYTES) -> OtaCommand:
    """Parse an untrusted command payload. Raises OtaRejectedError.

    Reasons: `payload_too_large` (more than `max_bytes`), `path_traversal` (a name or id
    holding '/', '\\', '..', a leading '.' or NUL), `malformed` (anything else invalid).
    The signature is not checked here (see `agent.trust.ota.verify_command`).
    """
    data = command_object(payload, max_bytes)
    try:
        return OtaCommand.from_wire(data)
    except ValueError as err:  # pydantic.ValidationError subclasses ValueError
        errors = getattr(err, "errors", None)
        problems = errors() if callable(errors) else []
        for e in problems:
            field = str(e["loc"][-1]) if e.get("loc") else ""
            if field in {"name", "command_id", "device"} and _looks_like_path_trick(e.get("input")):
                raise OtaRejectedError(
                    Reason.PATH_TRAVERSAL,
                    f"{'.'.join(str(p) for p in e['loc'])}: {e.get('input')!r} is not a safe name",
                ) from None
        lines = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in problems
        )
        raise OtaRejectedError(Reason.MALFORMED, lines or str(err)) from None
