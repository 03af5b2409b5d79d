"""The gateway reads `imgsz` metadata by the device's rules (agent.util.model_meta)."""

from __future__ import annotations

import pytest

from agent.gateway.registry import RegistryError, parse_imgsz


@pytest.mark.parametrize("text", ["True", "[True, True]", "(1, False)"])
def test_parse_imgsz_refuses_bool_dimensions(text: str) -> None:
    """A bool is not a size: the gateway refuses it, as the device's loader does."""
    with pytest.raises(RegistryError, match="is not \\[height, width\\]"):
        parse_imgsz(text)
