"""The Florence-2 runtime factory: picks the backend module by runtime kind.

Its own module so `runtime` (the interface both backends implement) imports neither backend,
and neither backend imports this factory: no cycle.
"""

from __future__ import annotations

from agent.fallback.config import RuntimeKind
from agent.fallback.runtime import FlorenceRuntime


def create_runtime(kind: RuntimeKind, threads: int = 1) -> FlorenceRuntime:
    """A runtime of `kind` (not loaded yet). Heavy imports happen here, not at import time."""
    if kind.startswith("torch-"):
        from agent.fallback.torch_runtime import TorchRuntime

        return TorchRuntime(kind, threads=threads)
    from agent.fallback.onnx_runtime import OnnxRuntime

    return OnnxRuntime(kind, threads=threads)
