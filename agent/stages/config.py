"""The `batch` section of the agent's configuration: frames of several cameras per engine call."""

from __future__ import annotations

from pydantic import Field

from agent.util.models import FrozenModel


class BatchConfig(FrozenModel):
    """Batching across cameras: one engine call runs the newest frame of up to `max` cameras."""

    max: int = Field(1, ge=1, le=64)
    """Most frames per engine call, each from another camera. 1 runs one frame at a time. Above 1
    the model needs a dynamic batch axis (ONNX) or is built with an optimisation profile over 1..max
    (TensorRT: model.engine.max_batch); a model with a static batch of 1 runs at batch 1 (logged).
    engines/recipes/dynamic_batch.py frees the batch axis of a static export. Changing it needs a
    restart."""
    max_wait_ms: float = Field(5.0, ge=0, le=1000)
    """After the first frame of a batch, how long to wait for frames of other cameras before running
    the batch with what is there. The wait overlaps the engine call of the previous batch."""
