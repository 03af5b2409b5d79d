"""The Florence-2 worker transport: `serve()` behind a Pipe, in a child process or a thread.

One job: start the worker, send it jobs and wait for answers with a timeout, stop it. What to
do when it fails (restart with backoff, count errors) is the dispatcher's (`worker.Fallback`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from agent.fallback.child import child_main, serve
from agent.fallback.config import FallbackConfig
from agent.fallback.runtime import FlorenceInfo, FlorenceModelError, Generation

LOAD_TIMEOUT_S = 600.0
"""Longest wait for the worker to load its model and say it is ready."""


class WorkerCrashed(Exception):
    """The worker died, hung past its job timeout, or failed to load."""


class JobFailed(Exception):
    """The worker is alive but this job failed (bad input, generation error)."""


class WorkerProcess:
    """A serve() loop behind a Pipe, in a child process or in a thread."""

    def __init__(self, cfg: FallbackConfig, model_dir: Path) -> None:
        self._cfg = cfg
        self._ids = itertools.count()
        parent, child = multiprocessing.Pipe()
        self._conn: Connection = parent
        self._child_conn = child
        if cfg.worker == "process":
            ctx = multiprocessing.get_context("spawn")
            self._runner: multiprocessing.process.BaseProcess | threading.Thread = ctx.Process(
                target=child_main,
                args=(child, cfg.runtime, str(model_dir), cfg.threads, cfg.nice, cfg.idle_priority),
                name="florence2-worker",
                daemon=True,
            )
        else:
            self._runner = threading.Thread(
                target=serve,
                args=(child, cfg.runtime, model_dir, cfg.threads),
                name="florence2-worker",
                daemon=True,
            )

    @property
    def pid(self) -> int | None:
        return getattr(self._runner, "pid", None)

    def alive(self) -> bool:
        return self._runner.is_alive()

    @property
    def exitcode(self) -> int | None:
        return getattr(self._runner, "exitcode", None)

    def _wait(self, timeout: float, stop: threading.Event) -> tuple:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._conn.poll(0.05):
                    return self._conn.recv()
            except (EOFError, OSError) as err:
                raise WorkerCrashed(f"worker connection lost: {err!r}") from None
            if not self.alive():
                code = getattr(self._runner, "exitcode", None)
                raise WorkerCrashed(f"worker died (exit code {code})")
            if time.monotonic() > deadline:
                raise WorkerCrashed(f"worker did not answer within {timeout:.0f} s")
            if stop.is_set():
                raise WorkerCrashed("stopping")

    def start(self, stop: threading.Event) -> FlorenceInfo:
        self._runner.start()
        if isinstance(self._runner, multiprocessing.process.BaseProcess):
            self._child_conn.close()  # the child holds its own copy
        msg = self._wait(LOAD_TIMEOUT_S, stop)
        if msg[0] == "load_error":
            raise FlorenceModelError(msg[1])
        return msg[1]

    def run(
        self, image: np.ndarray, prompt: str, max_new_tokens: int, stop: threading.Event
    ) -> Generation:
        job_id = next(self._ids)
        try:
            self._conn.send(("job", job_id, image, prompt, max_new_tokens))
        except (OSError, ValueError) as err:
            raise WorkerCrashed(f"cannot send job to worker: {err!r}") from None
        msg = self._wait(self._cfg.job_timeout_s, stop)
        if msg[0] == "error":
            raise JobFailed(msg[2])
        return msg[2]

    def stop(self, timeout: float) -> None:
        try:
            self._conn.send(("stop",))
        except (OSError, ValueError):
            pass
        self._runner.join(timeout)
        if (
            isinstance(self._runner, multiprocessing.process.BaseProcess)
            and self._runner.is_alive()
        ):
            self._runner.kill()
            self._runner.join(1.0)
        self._conn.close()
        if isinstance(self._runner, threading.Thread):
            self._child_conn.close()
