"""The Florence-2 worker loop, run in a child process (or, in thread mode, in a thread).

Protocol over a `multiprocessing` connection (pickled tuples):
  child -> parent  ("ready", FlorenceInfo) | ("load_error", message)
  parent -> child  ("job", job_id, image (h, w, 3) uint8 BGR, prompt, max_new_tokens) | ("stop",)
  child -> parent  ("ok", job_id, Generation) | ("error", job_id, message)
"""

from __future__ import annotations

import os
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from agent.fallback.factory import create_runtime

_LOAD_LOCK = threading.Lock()
"""One model load at a time per process: transformers' lazy imports are not safe to run from
two threads at once (thread mode, where an OTA candidate loads beside the running model)."""


class FlorenceInputError(ValueError):
    """The image given to Florence-2 is not an (h, w, 3) uint8 array with h, w > 0."""


def check_image(image: object) -> np.ndarray:
    """Return `image` if it is an (h, w, 3) uint8 BGR array with h, w > 0, else raise."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or image.shape[0] == 0
        or image.shape[1] == 0
    ):
        desc = (
            f"{image.shape} {image.dtype}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise FlorenceInputError(f"expected an (h, w, 3) uint8 BGR image, got {desc}")
    return image


def child_main(
    conn: Connection, kind: str, model_dir: str, threads: int, nice: int, idle: bool = False
) -> None:
    """Entry point of the worker process: load, lower the priority, serve jobs until 'stop'.

    The priority drops after loading: on a busy device a nice child would otherwise take
    minutes to import torch and read the weights, while generation is what must yield to YOLO.
    """
    from agent.logs import configure_logging

    configure_logging("auto", "info")  # a spawned child starts with structlog's defaults
    serve(conn, kind, Path(model_dir), threads, nice, idle)


def serve(
    conn: Connection, kind: str, model_dir: Path, threads: int, nice: int = 0, idle: bool = False
) -> None:
    """Load the runtime, add `nice` to this process's niceness (process mode only), and answer
    jobs on `conn` until 'stop' or the parent goes away."""
    runtime = create_runtime(kind, threads=threads)  # type: ignore[arg-type]
    try:
        with _LOAD_LOCK:  # thread mode: an OTA candidate may load while the first model does
            info = runtime.load(model_dir)
    except Exception as err:  # any failure to load is the model's load error, never a hang
        conn.send(("load_error", f"{type(err).__name__}: {err}"))
        return
    if nice:
        os.nice(nice)
    if idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    conn.send(("ready", info))
    try:
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            if msg[0] == "stop":
                return
            _, job_id, image, prompt, max_new_tokens = msg
            try:
                gen = runtime.generate(check_image(image), prompt, max_new_tokens)
            except (
                FlorenceInputError,
                RuntimeError,
                ValueError,
                IndexError,
                KeyError,
                TypeError,
            ) as err:
                conn.send(("error", job_id, f"{type(err).__name__}: {err}"))
            else:
                conn.send(("ok", job_id, gen))
    finally:
        runtime.close()
