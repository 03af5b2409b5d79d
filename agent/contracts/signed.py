"""Base model of a signed wire object that remembers the JSON it was received as.

`SignedModel.from_wire(raw)` validates `raw` (a parsed JSON object) and keeps it, and the
copy of every nested signed object inside it; dumping such a model in JSON mode gives back
exactly what was received, so signatures are checked over the received form, and a gateway
that forwards a signed manifest inside a command forwards the signer's bytes, not its own
re-dump. A model built in code (the signing side) has nothing received and dumps normally.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from agent.contracts.canonical import signed_bytes
from agent.util.models import FrozenModel

T = TypeVar("T", bound="SignedModel")

KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
SIGNATURE_PATTERN = r"^[A-Za-z0-9+/]{86}==$"  # base64 of 64 bytes

KeyId = Annotated[str, Field(pattern=KEY_ID_PATTERN)]
"""Id of a signing key: the first 16 hex digits of sha256 of its raw public key."""
Signature = Annotated[str, Field(pattern=SIGNATURE_PATTERN)]
"""A base64 ed25519 signature (64 bytes)."""


class SignedModel(FrozenModel):
    """A frozen, strict wire object whose signature covers its received JSON."""

    _received: dict[str, Any] | None = PrivateAttr(None)

    @classmethod
    def from_wire(cls: type[T], raw: Mapping[str, Any]) -> T:
        """Validate a received JSON object and remember it (raises pydantic.ValidationError)."""
        obj = cls.model_validate(raw)
        _attach_received(obj, raw)
        return obj

    @classmethod
    def from_json(cls: type[T], data: bytes | str) -> T:
        """`from_wire` of a JSON text (raises ValueError: bad JSON, or pydantic's error)."""
        raw = json.loads(data)
        if not isinstance(raw, Mapping):
            raise ValueError(f"{cls.__name__}: expected a JSON object")
        return cls.from_wire(raw)

    @property
    def received(self) -> dict[str, Any] | None:
        """The JSON object this was validated from (None when built in code)."""
        return self._received

    def wire(self) -> dict[str, Any]:
        """The JSON object to send or verify: the received one, else the model dumped."""
        return self.model_dump(mode="json", by_alias=True)

    def signed_part(self) -> bytes:
        """The bytes the signature covers (canonical form of `wire()` without `signature`)."""
        return signed_bytes(self.wire())

    def model_copy(self: T, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> T:
        """A copy; one with changed fields no longer counts as received."""
        out = super().model_copy(update=update, deep=deep)
        if update:
            out._received = None
        return out

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        if self._received is not None and info.mode == "json":
            return copy.deepcopy(self._received)
        return handler(self)


def _attach_received(obj: SignedModel, raw: Mapping[str, Any]) -> None:
    obj._received = copy.deepcopy(dict(raw))
    for name, field in type(obj).model_fields.items():
        value = getattr(obj, name)
        sub = raw.get(field.alias or name, raw.get(name))
        if isinstance(value, SignedModel) and isinstance(sub, Mapping):
            _attach_received(value, sub)
