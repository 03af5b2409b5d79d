"""Base pydantic models: strict (unknown fields fail loudly) and strict-and-frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are errors, so a typo in YAML or a foreign payload fails loudly."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FrozenModel(BaseModel):
    """A `StrictModel` whose instances cannot be changed after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
