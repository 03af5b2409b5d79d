"""The canonical form of a JSON object, which every signature covers.

Sorted keys, no whitespace, UTF-8 with non-ASCII characters kept as they are, no NaN or
infinity: for the JSON our programs exchange (strings, integers, booleans, null, and floats
that survive a round trip) this is the same byte string as RFC 8785 (JCS) gives.

A verifier canonicalises the object **as received** (the parsed JSON, not a re-dump of the
pydantic model it was validated into), so a newer verifier whose model has an extra optional
field still accepts what an older signer wrote. An older verifier whose model forbids unknown
fields still refuses a newer payload that carries a field it does not know.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_FIELD = "signature"


def canonical_json(data: Any) -> bytes:
    """JSON with sorted keys, no whitespace, UTF-8 (non-ASCII not escaped), no NaN."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signed_bytes(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the canonical form of `obj` without its `signature`."""
    return canonical_json({k: v for k, v in obj.items() if k != SIGNATURE_FIELD})
