"""Start `edge-agent run` as a real subprocess with a config written for one test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "engines" / "demo" / "model.onnx"
DEMO_MANIFEST = REPO / "engines" / "demo" / "manifest.json"
DEMO_CLIP = REPO / "engines" / "demo" / "clip.mp4"


def demo_config(
    state_dir: Path, port: int, device: str = "dev-test", **overrides: Any
) -> dict[str, Any]:
    """A config for the demo clip and model against a broker on `port`."""
    cfg: dict[str, Any] = {
        "device": {"id": device, "state_dir": str(state_dir)},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        "cameras": [
            {
                "id": "cam-a",
                "source": {"type": "file", "path": str(DEMO_CLIP), "loop": True, "pace": True},
            }
        ],
        "model": {
            "path": str(DEMO_MODEL),
            "manifest": str(DEMO_MANIFEST),
            "engine": {"type": "onnxruntime", "threads": 1},
        },
        "health": {"interval_s": 1.0, "progress_timeout_s": 3.0},
        "logging": {"format": "json", "level": "info"},
        "stop_timeout_s": 8.0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


class DaemonProcess:
    """`python -m agent run --config <file>` with stderr captured to a log file."""

    def __init__(
        self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "daemon.log"
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=self._log,
            cwd=REPO,
            env=self._env,
        )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                self._log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
