"""A real inference loop (agent.pipeline.Pipeline on demo-clip frames) to run the OTA manager on.

Only the MQTT side is replaced: `StatePublisher` records retained states and hands command
payloads to the manager's callback, as the real publisher does from paho's network thread.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaCommand, OtaStateMessage
from agent.contracts.topics import Topics
from agent.engines.detector import Detector, load_detector
from agent.engines.ort import OnnxRuntimeConfig
from agent.ota.config import OtaConfig
from agent.ota.manager import OtaManager
from agent.ota.sandbox import CandidateSpec
from agent.ota.slot import ModelSlot
from agent.pipeline import Pipeline, PipelineSettings
from agent.trust.config import TrustConfig
from agent.types import Frame

DEVICE = "dev-1"


def clip_frames(clip: Path, n: int = 40, width: int = 384) -> list[np.ndarray]:
    """The first `n` frames of the clip, downscaled to `width` (keeps tests quick)."""
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        h = int(img.shape[0] * width / img.shape[1])
        frames.append(cv2.resize(img, (width, h)))
    cap.release()
    return frames


class LoopFeed:
    """FrameFeed that replays frames in a loop, one every `interval_s` (like a camera)."""

    def __init__(self, images: list[np.ndarray], interval_s: float = 0.05) -> None:
        self.images = images
        self.interval = interval_s
        self.index = 0
        self._next = time.monotonic()

    def next_frame(self, timeout: float) -> Frame | None:
        wait = self._next - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        if wait > 0:
            time.sleep(wait)
        self._next = max(self._next + self.interval, time.monotonic() - self.interval)
        img = self.images[self.index % len(self.images)]
        self.index += 1
        return Frame("cam", img, time.time(), time.monotonic(), self.index)


class StatePublisher:
    """Records retained publishes; delivers commands to the subscribed callback."""

    def __init__(self) -> None:
        self.retained: list[tuple[str, bytes]] = []
        self.callbacks: dict[str, object] = {}
        self.lock = threading.Lock()

    def publish_retained(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.retained.append((topic, payload))

    def subscribe(self, topic: str, callback: object) -> None:
        self.callbacks[topic] = callback

    def deliver(self, topic: str, payload: bytes) -> None:
        self.callbacks[topic](topic, payload)  # type: ignore[operator]

    def states(self, command_id: str | None = None) -> list[OtaStateMessage]:
        with self.lock:
            msgs = [OtaStateMessage.model_validate(json.loads(p)) for _, p in self.retained]
        return [m for m in msgs if command_id is None or m.command_id == command_id]


class Rig:
    """Pipeline + OtaManager on a state dir; context manager that stops both."""

    def __init__(
        self,
        state_dir: Path,
        model: Path,
        manifest: Manifest,
        cfg: OtaConfig,
        images: list[np.ndarray],
        listen: bool = False,
        build: object = None,
        *,
        trust: TrustConfig,
    ) -> None:
        self.state_dir = state_dir
        self.cfg = cfg
        self.engine = OnnxRuntimeConfig(type="onnxruntime", threads=1, warmup_runs=1)
        self.messages: list[tuple[str, int, dict]] = []
        from agent.ota.startup import resolve_startup
        from agent.ota.store import ModelStore

        path, m = resolve_startup(ModelStore(state_dir / "models"), model, manifest)
        self.pipeline = Pipeline(
            PipelineSettings(device=DEVICE, boot_id="000000000000000b"),
            feed=LoopFeed(images),
            detector=self.load(path, m),
            submit=self._submit,
            load_detector=self.load,
        )
        if listen:  # like the daemon: a model change re-publishes status, which reads the model
            self.changes: list[str] = []
            self.pipeline.on_model_change = lambda info: self.changes.append(
                self.pipeline.active_detector().info.sha256
            )
        self.publisher = StatePublisher()
        self.topics = Topics(DEVICE)
        self.manager = OtaManager(
            cfg,
            trust,
            self.topics,
            state_dir,
            self.pipeline,
            self.publisher,
            slot=ModelSlot(
                build=build,  # type: ignore[arg-type]
                candidate=CandidateSpec(
                    engine=self.engine, conf_threshold=0.25, iou_threshold=0.45, max_detections=100
                ),
            ),
        )

    def load(self, path: Path, manifest: Manifest | None) -> Detector:
        return load_detector(path, self.engine, manifest=manifest)

    def _submit(self, camera: str, seq: int, payload: bytes) -> bool:
        self.messages.append((camera, seq, json.loads(payload)))
        return True

    def send(self, cmd: OtaCommand | bytes) -> None:
        payload = cmd if isinstance(cmd, bytes) else cmd.model_dump_json(by_alias=True).encode()
        self.publisher.deliver(self.topics.ota_command, payload)

    def wait_terminal(self, command_id: str, timeout: float = 60.0) -> OtaStateMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.publisher.states(command_id):
                if m.state.terminal:
                    return m
            time.sleep(0.05)
        raise TimeoutError(
            f"no terminal state for {command_id}: "
            f"{[s.state.value for s in self.publisher.states(command_id)]}"
        )

    def wait_frames(self, n: int, timeout: float = 30.0) -> None:
        target = len(self.messages) + n
        deadline = time.monotonic() + timeout
        while len(self.messages) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        if len(self.messages) < target:
            raise TimeoutError(f"only {len(self.messages)} frames, wanted {target}")

    def versions(self) -> list[int]:
        return [m["model"]["version"] for _, _, m in self.messages]

    def __enter__(self) -> Rig:
        self.pipeline.start()
        self.manager.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.manager.stop(5.0)
        self.pipeline.stop(5.0)  # closes the active detector (the pipeline owns it)


def files_under(path: Path) -> Iterator[Path]:
    return (p for p in path.rglob("*") if p.is_file())


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst
