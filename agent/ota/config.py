"""Config of the device side of OTA model updates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OtaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Accept OTA commands on edge/<device>/ota/command.")
