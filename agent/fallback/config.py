"""Config of the Florence-2 hard-frame fallback."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FallbackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Escalate hard frames to Florence-2.")
