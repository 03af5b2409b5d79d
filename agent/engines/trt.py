"""TensorRT 10 backend (Jetson): deserialised engine, pycuda buffers, execute_async_v3."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TensorRTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["tensorrt"] = "tensorrt"
    device: int = Field(0, ge=0, description="CUDA device ordinal.")
    warmup_runs: int = Field(2, ge=0, description="Inferences run at load, before serving.")
