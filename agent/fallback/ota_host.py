"""The Florence-2 fallback as an OTA model slot: unpack, load, try, swap, watch.

A signed `kind: florence2` model is one uncompressed tar (`edge-agent florence pack`) of a
transformers directory or an ONNX export with its tokenizer. The Florence-2 slot's
`OtaManager` (`agent.ota.slot.ModelSlot(kind="florence2")`) drives the same steps as for a
detector, with these parts:

* `prepare_archive` (the build hook, state `building`): unpack the verified archive next to
  it (`model/`) under the rules of `agent.util.archive` (no `..`, absolute paths, links or
  special files; size-capped while writing) and refuse ONNX files with external data. Any
  problem is `bad_archive`, nothing is left behind;
* `FlorenceHost` (the `ModelHost`): loads a candidate in a new worker process, swaps it in
  between two jobs (`Fallback.swaps`) and reports the jobs' health for probation (errors,
  parse failures and crashes, job time, detections);
* `florence_trial`: the candidate answers the configured task on recent real frames and its
  answers parse, within the latency budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaRejectedError, Reason
from agent.fallback.model_swap import Candidate, FlorenceModel
from agent.fallback.parse import FlorenceParseError, build_prompt, parse_generation
from agent.fallback.process import JobFailed, WorkerCrashed, WorkerProcess
from agent.fallback.worker import Fallback
from agent.health.metrics import WindowSummary
from agent.ota.validate import check_latency
from agent.trust.model_check import ModelCheckError, check_onnx_file
from agent.types import Frame, ModelInfo
from agent.util.archive import ArchiveError, unpack

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.contracts.topics import Topics
    from agent.ota.host import RetainedPublisher
    from agent.ota.manager import OtaManager
    from agent.pipeline import Pipeline

log = structlog.get_logger(__name__)

UNPACKED = "model"
"""Directory beside an installed archive (`<name>/<version>/model.tar`) holding its content."""


def model_dir_of(artifact: Path) -> Path:
    """The directory a Florence-2 artifact loads from: an archive's unpacked `model/` beside
    it, or a configured directory itself."""
    return artifact.parent / UNPACKED if artifact.is_file() else artifact


def prepare_archive(max_bytes: int) -> Callable[[Path, Manifest], None]:
    """The slot's build hook: unpack `path` into `model/` beside it (see the module doc)."""

    def hook(path: Path, manifest: Manifest) -> None:
        dest = path.parent / UNPACKED
        if dest.is_dir():
            return  # unpacked before (the store reinstalled the same verified archive)
        try:
            unpack(path, dest, max_bytes=min(max_bytes, manifest.length))
            for onnx_file in sorted(dest.rglob("*.onnx")):
                check_onnx_file(onnx_file)
        except (ArchiveError, ModelCheckError) as err:
            if dest.exists():
                import shutil

                shutil.rmtree(dest, ignore_errors=True)
            raise OtaRejectedError(Reason.BAD_ARCHIVE, f"{manifest.name}: {err}") from None
        log.info("florence2 archive unpacked", model=manifest.name, version=manifest.version)

    return hook


def ensure_unpacked(artifact: Path, manifest: Manifest | None, max_bytes: int) -> Path:
    """At start: the model directory of the picked artifact, unpacking it again if the
    directory went missing (the archive's sha256 was checked by the start-up resolution)."""
    if artifact.is_file() and manifest is not None:
        prepare_archive(max_bytes)(artifact, manifest)
    return model_dir_of(artifact)


class FlorenceHost:
    """`agent.ota.host.ModelHost` over the Florence-2 fallback (hot swaps only)."""

    def __init__(self, fallback: Fallback, frames: Callable[[int], list[Frame]]) -> None:
        self.fallback = fallback
        self._frames = frames
        self._stop = threading.Event()
        self._active: Candidate | _Running = _Running(fallback.model)

    def active_detector(self) -> Candidate | _Running:
        return self._active

    def recent_frames(self, n: int) -> list[Frame]:
        return self._frames(n)

    def load_detector(self, model_path: Path, manifest: Manifest | None) -> Candidate:
        """Start a worker process on the candidate's directory and wait until it loaded."""
        model = FlorenceModel(
            model_dir_of(model_path),
            None if manifest is None else manifest.name,
            self.fallback.cfg.model_version if manifest is None else manifest.version,
            None if manifest is None else manifest.sha256,
        )
        worker = WorkerProcess(self.fallback.cfg, model.model_dir or model_path)
        try:
            runtime_info = worker.start(self._stop)
        except BaseException:
            worker.stop(2.0)
            raise
        return Candidate(worker, runtime_info, model, _model_info(model, manifest))

    def discard(self, candidate: Candidate) -> None:
        candidate.close()

    def swap(self, new: Candidate, timeout: float) -> ModelInfo:
        """Hand `new` to the dispatcher, which installs it between two jobs."""
        old = self._active.info
        try:
            self.fallback.swaps.offer(new, timeout)
        except TimeoutError:
            new.close()
            raise
        self._active = new
        return old

    def unload(self) -> None:
        raise RuntimeError("the Florence-2 slot swaps hot only")

    def pause(self) -> None:
        """Nothing to pause: the swap waits for the end of the running job."""

    def resume(self) -> None:
        """See `pause`."""

    def window_stats(self, since_mono: float) -> WindowSummary:
        return self.fallback.jobs.summary(since_mono, time.monotonic())


class _Running:
    """The model the fallback started with (the configured one, or the store's active)."""

    def __init__(self, model: FlorenceModel) -> None:
        self.info = _model_info(model, None)


def _model_info(model: FlorenceModel, manifest: Manifest | None) -> ModelInfo:
    return ModelInfo(
        name=model.name or (model.model_dir.name if model.model_dir else "florence2"),
        version=model.version,
        sha256=model.sha256 or "0" * 64,
        input_size=tuple(manifest.input_size) if manifest else (768, 768),  # type: ignore[arg-type]
        class_names=tuple(manifest.class_names) if manifest else (),
    )


def florence_trial(
    task: str, max_new_tokens: int, class_names: Callable[[], tuple[str, ...]]
) -> TrialFn:
    """The slot's trial: the candidate answers `task` on recent frames (the detector's class
    names for grounding prompts), parsably, within the latency budget."""

    def run(candidate: Candidate, images: list[np.ndarray], budget_ms: float) -> None:
        images = images or [np.full((480, 640, 3), 114, dtype=np.uint8)]
        stop = threading.Event()
        latencies = []
        names = class_names()
        for i, image in enumerate(images):
            try:
                prompt = build_prompt(task, names)
                gen = candidate.worker.run(image, prompt, max_new_tokens, stop)
                parse_generation(task, gen.text, gen.image_size, names)
            except (JobFailed, WorkerCrashed, FlorenceParseError, ValueError) as err:
                raise OtaRejectedError(
                    Reason.VALIDATION_FAILED, f"florence2 candidate failed on frame {i}: {err}"
                ) from None
            latencies.append(gen.pre_ms + gen.infer_ms)
        problem = check_latency(latencies, budget_ms)
        if problem:
            raise OtaRejectedError(Reason.VALIDATION_FAILED, problem)

    return run


TrialFn = Callable[[Candidate, list[np.ndarray], float], None]


def slot_enabled(cfg: AgentConfig) -> bool:
    """The Florence-2 slot runs: OTA, the fallback and `ota.florence2` are all on, and the
    configured model is a local directory (the slot keeps it as the first rollback target)."""
    if not (cfg.ota.enabled and cfg.fallback.enabled and cfg.ota.florence2.enabled):
        return False
    if not Path(cfg.fallback.model).is_dir():
        log.error(
            "florence2 OTA is off: fallback.model is not a local directory",
            model=cfg.fallback.model,
            hint="download it once (edge-agent florence fetch) and configure its directory",
        )
        return False
    return True


def florence_startup(cfg: AgentConfig) -> FlorenceModel | None:
    """Settle the Florence-2 slot's store (as for the detector) and pick the model to run:
    the slot's active archive, unpacked, else the configured directory. None: no slot."""
    from agent.ota.slot import ModelSlot
    from agent.ota.startup import resolve_startup
    from agent.ota.store import ModelStore

    if not slot_enabled(cfg):
        return None
    store = ModelStore(ModelSlot(kind="florence2").store_dir(cfg.device.state_dir))
    configured = Path(cfg.fallback.model)
    path, manifest = resolve_startup(store, configured, None)
    if manifest is None:
        return FlorenceModel(configured, None, cfg.fallback.model_version)
    model_dir = ensure_unpacked(path, manifest, cfg.ota.florence2.max_unpacked_bytes)
    return FlorenceModel(model_dir, manifest.name, manifest.version, manifest.sha256)


def build_florence_ota(
    cfg: AgentConfig,
    topics: Topics,
    publisher: RetainedPublisher,
    fallback: Fallback,
    pipeline: Pipeline,
) -> OtaManager:
    """The Florence-2 slot's OTA manager over `fallback` (frames and class names from the
    detector's pipeline)."""
    from agent.ota.manager import OtaManager
    from agent.ota.slot import ModelSlot

    f2 = cfg.ota.florence2
    trial = florence_trial(
        cfg.fallback.task,
        cfg.fallback.max_new_tokens,
        lambda: tuple(pipeline.active_detector().info.class_names),
    )
    return OtaManager(
        f2.slot_config(cfg.ota),
        cfg.trust,
        topics,
        cfg.device.state_dir,
        FlorenceHost(fallback, pipeline.recent_frames),  # type: ignore[arg-type]
        publisher,
        slot=ModelSlot(
            kind="florence2",
            trial=trial,
            runnable_formats=frozenset({"tar"}),
            build=prepare_archive(f2.max_unpacked_bytes),
        ),
    )
