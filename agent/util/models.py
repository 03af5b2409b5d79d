"""Base pydantic models: strict (unknown fields fail loudly) and strict-and-frozen.

Both take a field's description from the string literal right under it
(`use_attribute_docstrings`), so a field reads

    probation_s: float = Field(300.0, ge=0)
    '''How long the new model's jobs are watched before committing.'''
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are errors, so a typo in YAML or a foreign payload fails loudly."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


class FrozenModel(BaseModel):
    """A `StrictModel` whose instances cannot be changed after validation."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )
