"""`edge-gateway serve` as a measured subprocess, for the gateway benchmarks."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


class MeteredGateway:
    """Starts `edge-gateway --config CONFIG serve` (stderr to `log`); `meter()` starts counting
    its CPU seconds and sampling its RSS every 0.1 s; `stop_meter()` returns both."""

    def __init__(self, config: Path, log: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.gateway.cli", "--config", str(config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            cwd=REPO,
        )
        self._ps = psutil.Process(self.proc.pid)
        self._stop = threading.Event()
        self._cpu0 = 0.0
        self.peak_rss = 0
        self._sampler: threading.Thread | None = None

    def meter(self) -> None:
        self._cpu0 = sum(self._ps.cpu_times()[:2])
        self.peak_rss = self._ps.memory_info().rss
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_rss = max(self.peak_rss, self._ps.memory_info().rss)

    def stop_meter(self) -> tuple[float, float]:
        """(CPU seconds since `meter()`, peak RSS in MB)."""
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        return sum(self._ps.cpu_times()[:2]) - self._cpu0, self.peak_rss / 2**20

    def terminate(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
