"""Which Florence-2 model the fallback runs, and replacing it between two jobs.

The OTA manager's Florence-2 slot (`agent.fallback.ota_host`) loads a candidate in its own
worker process; `SwapSlot` hands it to the dispatcher, which installs it at the top of its
loop, between two jobs, and stops the old worker. No job is cut in half and no frame waits.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.fallback.process import WorkerProcess
from agent.fallback.runtime import FlorenceInfo
from agent.types import ModelInfo


@dataclass(frozen=True)
class FlorenceModel:
    """The model a worker runs and the identity its messages report.

    Attributes:
        model_dir: local directory loaded by the runtime (None: resolve `fallback.model`).
        name: name for `model.name` in messages (None: the runtime's, the directory name).
        version: `model.version` in messages (`fallback.model_version`, or the manifest's).
        sha256: `model.sha256` in messages (None: the runtime's digest of the weights; an OTA
            model reports its archive's sha256, as in its manifest).
    """

    model_dir: Path | None
    name: str | None
    version: int
    sha256: str | None = None

    def report(self, info: FlorenceInfo) -> FlorenceInfo:
        """`info` with this model's name and sha256 where it has them."""
        return dataclasses.replace(
            info, name=self.name or info.name, sha256=self.sha256 or info.sha256
        )


@dataclass
class Candidate:
    """A loaded worker not in service yet: what the OTA slot loads, tries and swaps in.

    `info` is the model's identity as the OTA journal reports it (`agent.types.ModelInfo`);
    `runtime_info` what the worker said when it loaded."""

    worker: WorkerProcess
    runtime_info: FlorenceInfo
    model: FlorenceModel
    info: ModelInfo

    def close(self) -> None:
        self.worker.stop(2.0)


class SwapSlot:
    """One pending replacement; the dispatcher takes it between two jobs."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: Candidate | None = None
        self._taken: Candidate | None = None

    def offer(self, candidate: Candidate, timeout: float) -> None:
        """Wait until the dispatcher took `candidate`; TimeoutError (candidate withdrawn,
        not closed) when it did not within `timeout` seconds."""
        with self._cv:
            self._pending = candidate
            if not self._cv.wait_for(lambda: self._taken is candidate, timeout):
                self._pending = None
                raise TimeoutError(f"the Florence-2 worker did not finish its job in {timeout}s")
            self._taken = None

    def take(self) -> Candidate | None:
        """Dispatcher side: the pending candidate, if any (the offer returns once taken)."""
        with self._cv:
            candidate, self._pending = self._pending, None
            if candidate is not None:
                self._taken = candidate
                self._cv.notify_all()
            return candidate
