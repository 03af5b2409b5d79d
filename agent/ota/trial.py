"""A candidate model's trial on recent real frames: it runs, its output is sane and fast.

Used twice per update: in the memory-limited child (`agent.ota.sandbox`) and then in the daemon
on the instance that will be swapped in. Raises `OtaRejectedError(validation_failed)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.contracts.ota import OtaRejectedError, Reason
from agent.ota.validate import check_detections, check_latency, check_raw_outputs

if TYPE_CHECKING:
    from agent.engines.detector import Detector


def blank_frame(detector: Detector) -> np.ndarray:
    """A grey frame of the model's input size, for a trial without recent frames."""
    h, w = detector.info.input_size
    return np.full((h, w, 3), 114, dtype=np.uint8)


def _run_one(detector: Detector, image: np.ndarray, index: int) -> float:
    """Run frame `index`; raise on a crash or insane output; return its latency (ms)."""
    from agent.engines.yolo import Letterboxer

    try:
        if index == 0:
            tensor, _ = Letterboxer(detector.info.input_size)(image)
            problem = check_raw_outputs(detector.engine.infer(tensor))
            if problem:
                raise OtaRejectedError(Reason.VALIDATION_FAILED, f"raw outputs: {problem}")
        dets, timings = detector.detect(image)
    except OtaRejectedError:
        raise
    except Exception as err:  # the new model crashing on a real frame is the finding
        raise OtaRejectedError(
            Reason.VALIDATION_FAILED, f"crashed on recent frame {index}: {err!r}"
        ) from None
    nc = len(detector.info.class_names)
    max_det = detector.params.max_detections
    problem = check_detections(dets, (image.shape[0], image.shape[1]), nc, max_det)
    if problem:
        raise OtaRejectedError(Reason.VALIDATION_FAILED, f"frame {index}: {problem}")
    return timings.total


def trial(detector: Detector, images: list[np.ndarray], latency_budget_ms: float) -> None:
    """Run `detector` on `images` (a blank frame when empty); raise validation_failed."""
    images = images or [blank_frame(detector)]
    latencies = [_run_one(detector, image, i) for i, image in enumerate(images)]
    problem = check_latency(latencies, latency_budget_ms)
    if problem:
        raise OtaRejectedError(Reason.VALIDATION_FAILED, problem)
