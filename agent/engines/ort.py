"""ONNX Runtime backend: CPU here, CUDA or TensorRT execution providers where present."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OnnxRuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["onnxruntime"] = "onnxruntime"
    providers: list[Literal["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        min_length=1,
        description="Execution providers in order of preference.",
    )
    allow_provider_fallback: bool = Field(
        False,
        description="Run on the providers that exist when a requested one is missing "
        "(logged); false: refuse to start.",
    )
    threads: int = Field(0, ge=0, description="Intra-op threads; 0 lets ONNX Runtime choose.")
    warmup_runs: int = Field(2, ge=0, description="Inferences run at load, before serving.")
