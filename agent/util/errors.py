"""Errors that carry a machine-readable reason with their words: one shape for every refusal.

`ReasonError` is for checks whose message leads with the reason ("bad_signature: ..."),
`Refused` for requests refused to a person, whose message stands alone.
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, TypeVar

R = TypeVar("R", bound="Enum | str")


class ReasonError(Exception, Generic[R]):
    """`reason` (an enum member or a plain code) says why, `detail` in words;
    str() is "reason: detail"."""

    def __init__(self, reason: R, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        code = reason.value if isinstance(reason, Enum) else reason
        super().__init__(f"{code}: {detail}")


class Refused(Exception, Generic[R]):
    """A request refused: `reason` says which rule, `message` says it to a person (and is
    str() of the error)."""

    def __init__(self, reason: R, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)
