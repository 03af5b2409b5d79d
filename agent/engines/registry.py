"""Engine backends by `type`: the config union and the factory.

Adding a backend: one file in this package holding its config model (with a
`type: Literal[...]`) and its engine class; register both here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agent.engines.base import Engine
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.trt import TensorRTConfig

EngineConfig = Annotated[OnnxRuntimeConfig | TensorRTConfig, Field(discriminator="type")]


def create_engine(
    config: OnnxRuntimeConfig | TensorRTConfig, *, input_hw: tuple[int, int] | None = None
) -> Engine:
    """Build the (not yet loaded) engine for a backend config.

    `input_hw`: the model's input (H, W) when known (a manifest's); TensorRT sizes engines
    with a dynamic input by it. ONNX Runtime takes any size per call and does not need it.
    """
    if isinstance(config, OnnxRuntimeConfig):
        from agent.engines.ort import OnnxRuntimeEngine

        return OnnxRuntimeEngine(config)
    if isinstance(config, TensorRTConfig):
        from agent.engines.trt import TensorRTEngine

        return TensorRTEngine(config, input_hw=input_hw)
    raise TypeError(f"unknown engine config {type(config).__name__}")
