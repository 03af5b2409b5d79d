"""The gateway stays pure Python: importing it loads no GPU or vision library."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.gateway.conftest import REPO

MODULES = [
    "agent.gateway.cli",
    "agent.gateway.config",
    "agent.gateway.db",
    "agent.gateway.fleet",
    "agent.gateway.intake",
    "agent.gateway.keys",
    "agent.gateway.registry",
    "agent.gateway.rollout",
    "agent.gateway.api.app",
    "agent.gateway.client",
    "agent.gateway.service",
    "agent.gateway.cli_dataset",
    "agent.gateway.dataset_build",
    "agent.gateway.dataset_sources",
    "agent.util.dataset_hash",
    "agent.contracts.dataset",
]
FORBIDDEN = ["torch", "onnxruntime", "cv2", "tensorrt", "pycuda", "numpy", "ultralytics"]


def test_importing_the_gateway_loads_no_heavy_library() -> None:
    """In a fresh interpreter, every gateway module imports without torch/ORT/OpenCV/TensorRT."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(n for n in {FORBIDDEN!r} if n in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == []
