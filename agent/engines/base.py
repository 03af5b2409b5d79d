"""The engine interface every inference backend implements, and its I/O description.

A backend only runs a tensor through a network. Letterboxing and YOLO decoding are pure
functions in `agent.engines.yolo`, shared by every backend; `agent.engines.detector`
glues a backend to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class EngineError(Exception):
    """A model could not be loaded or run; the message says why."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one network input or output.

    Dynamic dimensions are given as -1.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class EngineIO:
    """What a loaded network takes and gives, plus its embedded metadata.

    Attributes:
        inputs: input tensors (YOLO networks have exactly one, NCHW float).
        outputs: output tensors in the network's order.
        metadata: string key/values embedded in the model (Ultralytics writes
            `names`, `imgsz`, `stride`, `task`, `end2end` here).
        max_batch: most frames per call when the batch axis is dynamic (-1) but bounded
            (a TensorRT optimisation profile); None: unbounded, or the axis is static.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    max_batch: int | None = None


@runtime_checkable
class Engine(Protocol):
    """An inference backend: load a model file, run NCHW float tensors, close.

    Implementations own their accelerator resources and free them in `close()`;
    they never rely on `__del__`. `infer` is called from one thread at a time.
    """

    def load(self, model_path: Path) -> EngineIO:
        """Load the model, warm it up, and describe its inputs and outputs."""
        ...

    def infer(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run one batch (shape of the input spec; a dynamic batch axis takes 1..max_batch
        frames) and return the outputs in order, batch first."""
        ...

    def close(self) -> None:
        """Free everything `load` acquired. Safe to call twice."""
        ...
