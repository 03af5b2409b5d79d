"""What the OTA manager needs from the running inference loop (`agent.pipeline.Pipeline`).

The host owns every detector: the manager never closes one, it asks the host (`swap`,
`discard`, `unload`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent.contracts.manifest import Manifest
from agent.health.metrics import WindowSummary
from agent.types import Frame, ModelInfo

if TYPE_CHECKING:
    from agent.engines.detector import Detector

WindowStats = WindowSummary
"""Health of the frames processed since a monotonic time: `frames` (successful), `errors`,
`latency_p50_ms`, `latency_p99_ms`, `detections_per_frame` (None without frames)."""


class ModelHost(Protocol):
    """The inference loop as the OTA manager sees it."""

    def active_detector(self) -> Detector:
        """The detector serving frames now."""
        ...

    def recent_frames(self, n: int) -> list[Frame]:
        """Up to `n` of the latest real frames inferred (oldest first)."""
        ...

    def swap(self, new: Detector, timeout: float) -> ModelInfo:
        """Install `new` between two frames (no frame dropped) and close the old detector;
        return the old model's info.

        Raises TimeoutError if the loop did not reach a frame boundary in `timeout` seconds
        (the old detector stays installed, `new` is closed).
        """
        ...

    def discard(self, candidate: Detector) -> None:
        """Close a candidate from `load_detector` that will not be installed."""
        ...

    def unload(self) -> None:
        """Close the active detector while paused (pause-mode swaps free memory first)."""
        ...

    def pause(self) -> None:
        """Stop taking frames after the current one (pause-mode swaps)."""
        ...

    def resume(self) -> None:
        """Take frames again after `pause`."""
        ...

    def window_stats(self, since_mono: float) -> WindowStats:
        """Health of the frames processed since `since_mono` (time.monotonic())."""
        ...

    def load_detector(self, model_path: Path, manifest: Manifest) -> Detector:
        """Load and warm a candidate with the daemon's engine config and thresholds; the
        host owns it (it is closed by `swap` later, or by `discard`).

        Raises agent.engines.base.EngineError (or a subclass) when the model cannot load.
        """
        ...


class RetainedPublisher(Protocol):
    """The MQTT side the OTA manager uses (`agent.publish.publisher.Publisher`)."""

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Publish `payload` retained at QoS 1 (non-blocking)."""
        ...

    def subscribe(self, topic: str, callback: object) -> None:
        """Subscribe at QoS 1; `callback(topic: str, payload: bytes)` runs in the network
        thread and must not block. Re-subscribed after every reconnect."""
        ...
