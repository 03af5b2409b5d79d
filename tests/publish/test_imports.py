"""The wall around publish: importing it loads no inference library and no engine code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FORBIDDEN = ("onnxruntime", "cv2", "agent.engines", "agent.ota", "agent.config", "tensorrt")


def test_importing_agent_publish_loads_no_engine_or_inference_library() -> None:
    """Every module of agent.publish imported in a fresh interpreter pulls in none of
    onnxruntime, cv2, tensorrt, agent.engines, agent.ota or agent.config."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import agent.publish\n"
        "for m in pkgutil.iter_modules(agent.publish.__path__):\n"
        "    importlib.import_module('agent.publish.' + m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r}\n"
        f"             or any(n == f or n.startswith(f + '.') for f in {FORBIDDEN!r}))\n"
        "print('|'.join(bad))\n"
        "print(len([n for n in sys.modules if n.startswith('agent.publish.')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "", f"agent.publish loaded: {out[0]}"
    assert int(out[1]) >= 10  # the modules were really imported
