"""Identifier rules shared by config, topics and the OTA protocol."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_ID_RE = re.compile(rf"^{ID_PATTERN}$")


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid device/camera id, else raise ValueError.

    Valid ids match `[a-z0-9][a-z0-9-]{0,62}`: safe as one MQTT topic level and as a
    file name, with no wildcards (`+`, `#`), separators (`/`) or upper case.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: must match {ID_PATTERN} "
            "(lower-case letters, digits and '-', 1-63 characters, not starting with '-')"
        )
    return value


def _check_any(value: str) -> str:
    return check_id(value)


SafeId = Annotated[str, AfterValidator(_check_any)]
"""A pydantic string type that only accepts valid device/camera/model ids."""
