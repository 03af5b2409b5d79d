"""A YOLO detector: one engine plus the pure pre/post-processing of `agent.engines.yolo`.

`load_detector` opens a model file, works out its identity (sha256, manifest or
Ultralytics metadata) and checks it is consistent before a single frame is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import structlog

from agent.contracts.manifest import Manifest
from agent.engines.base import Engine, EngineError, EngineIO
from agent.engines.engine_cache import ENGINE_SUFFIXES, EngineRecordError, sidecar_path
from agent.engines.model_loading import (
    ModelMetadataError,
    file_sha256,
    metadata_imgsz,
    metadata_names,
)
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.registry import create_engine
from agent.engines.trt import TensorRTConfig
from agent.engines.yolo import (
    DecodeParams,
    Layout,
    Letterboxer,
    LetterboxInfo,
    decode,
    decode_batch,
    detect_layout,
    layout_num_classes,
)
from agent.memtrim import trim_heap
from agent.types import Detections, ModelInfo, Timings

log = structlog.get_logger(__name__)


class Detector:
    """Frames in, Detections out: letterbox -> engine -> decode/NMS -> original pixels.

    Not thread-safe: one inference thread calls `detect`.

    Attributes:
        info: the model's identity and interface.
        layout: its output layout.
        io: what the engine reported at load.
    """

    def __init__(
        self,
        engine: Engine,
        io: EngineIO,
        info: ModelInfo,
        *,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Wrap a loaded engine; the Detector owns it from now on and closes it in `close()`.

        `clock` (seconds) times the stages: wall time by default; benchmarks may pass
        `time.thread_time` for CPU time.

        Raises:
            EngineError: the outputs fit no YOLO layout, or the class count implied by the
                output shape disagrees with `info.class_names`.
        """
        if not info.class_names:
            raise ModelMetadataError(
                "model has no class names: give a manifest or export with Ultralytics metadata"
            )
        nc = len(info.class_names)
        shapes = [o.shape for o in io.outputs]
        try:
            self.layout: Layout = detect_layout(shapes, io.metadata, nc)
        except EngineError as exc:
            # Would it fit with another class count? Then the names are what is wrong.
            try:
                self.layout = detect_layout(shapes, io.metadata, None)
            except EngineError:
                raise EngineError(
                    f"{exc} (nc from {nc} class names {list(info.class_names)[:10]})"
                ) from exc
        shape_nc = layout_num_classes(self.layout, shapes[0])
        if shape_nc is not None and shape_nc != nc:
            raise ModelMetadataError(
                f"class names disagree with the model: {nc} names {list(info.class_names)[:10]} "
                f"but output {list(shapes[0])} ({self.layout.name} layout) has {shape_nc} classes"
            )
        in_shape = io.inputs[0].shape
        for got, want, axis in (
            (in_shape[2], info.input_size[0], "height"),
            (in_shape[3], info.input_size[1], "width"),
        ):
            if got > 0 and got != want:
                raise ModelMetadataError(
                    f"input size {info.input_size} disagrees with the model input "
                    f"{list(in_shape)} ({axis})"
                )
        self.engine = engine
        self.io = io
        self.info = info
        self.params = DecodeParams(conf_threshold, iou_threshold, max_detections)
        self._nc = nc
        self._letterbox = Letterboxer(info.input_size)
        self._clock = clock
        self._closed = False

    def detect(self, image: npt.NDArray[np.uint8]) -> tuple[Detections, Timings]:
        """Detect objects in one frame.

        Args:
            image: (h, w, 3) uint8 BGR.

        Returns:
            Detections in pixels of `image`, and pre/infer/post times in ms.
        """
        if self._closed:
            raise EngineError("detector is closed")
        t0 = self._clock()
        tensor, lb = self._letterbox(image)
        t1 = self._clock()
        outputs = self.engine.infer(tensor)
        t2 = self._clock()
        dets = decode(
            outputs, self.layout, self._nc, lb, (image.shape[0], image.shape[1]), self.params
        )
        t3 = self._clock()
        return dets, Timings(pre=(t1 - t0) * 1e3, infer=(t2 - t1) * 1e3, post=(t3 - t2) * 1e3)

    @property
    def batch_limit(self) -> int | None:
        """Most frames per engine call: the static batch, the engine's bound on a dynamic
        batch axis (TensorRT profile), or None (any: ONNX Runtime)."""
        axis = self.io.inputs[0].shape[0]
        return self.io.max_batch if axis < 0 else int(axis)

    def batch_size(self, wanted: int) -> int:
        """How many frames one engine call takes when `wanted` are asked for (logged when a
        static batch axis refuses more than one)."""
        if self.batch_limit is None or wanted <= self.batch_limit:
            return wanted
        log.info(
            "model takes fewer frames per engine call than batch.max: batches are cut to it",
            model=self.info.name,
            version=self.info.version,
            batch_axis=self.batch_limit,
            wanted=wanted,
        )
        return max(1, min(wanted, self.batch_limit))

    def infer_batch(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run one letterboxed (n, 3, H, W) batch through the engine; outputs batch first."""
        if self._closed:
            raise EngineError("detector is closed")
        return self.engine.infer(tensor)

    def decode_batch(
        self,
        outputs: list[npt.NDArray[np.float32]],
        infos: list[LetterboxInfo],
        image_hws: list[tuple[int, int]],
    ) -> list[Detections]:
        """Detections of each frame of a batch, in its own pixels (current thresholds)."""
        return decode_batch(outputs, self.layout, self._nc, infos, image_hws, self.params)

    def close(self) -> None:
        """Close the engine and give its freed memory back to the OS. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self.engine.close()
            trim_heap()  # without it RSS grows with every model swap (agent/memtrim.py)

    def __enter__(self) -> Detector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _artifact_sha256(model_path: Path, file_sha256: str, manifest: Manifest) -> str:
    """The sha256 that identifies the model: the manifest's artifact, checked against the file.

    A TensorRT engine built on the device from the manifest's ONNX artifact has another
    digest; it is tied to the manifest through its build record (`<engine>.json`), whose
    ONNX digest must be the manifest's and whose engine digest must be the file's.

    Raises:
        ModelMetadataError: the file is not the manifest's artifact (nor built from it).
    """
    if manifest.format == "onnx" and model_path.suffix in ENGINE_SUFFIXES:
        from agent.engines.build import read_record

        try:
            record = read_record(sidecar_path(model_path))
        except EngineRecordError as exc:
            raise ModelMetadataError(
                f"{model_path} is an engine but manifest {manifest.name} v{manifest.version} "
                f"describes an ONNX artifact, and the engine's build record cannot tie them: {exc}"
            ) from exc
        if record.identity.onnx_sha256 != manifest.sha256:
            raise ModelMetadataError(
                f"{model_path} was built from ONNX sha256 {record.identity.onnx_sha256}, but "
                f"manifest {manifest.name} v{manifest.version} is for {manifest.sha256}"
            )
        if record.engine_sha256 != file_sha256:
            raise ModelMetadataError(
                f"{model_path} has sha256 {file_sha256}, not {record.engine_sha256} as built "
                "(changed since its build record was written)"
            )
        return manifest.sha256
    if manifest.sha256 != file_sha256:
        raise ModelMetadataError(
            f"manifest {manifest.name} v{manifest.version} is for sha256 {manifest.sha256}, "
            f"but {model_path} has sha256 {file_sha256}"
        )
    return file_sha256


def _model_info(
    model_path: Path, sha256: str, io: EngineIO, manifest: Manifest | None
) -> ModelInfo:
    """Identity and interface from the manifest and/or Ultralytics metadata, cross-checked."""
    meta_names = metadata_names(io.metadata)
    meta_imgsz = metadata_imgsz(io.metadata)
    if manifest is not None:
        sha256 = _artifact_sha256(model_path, sha256, manifest)
        names = tuple(manifest.class_names)
        if meta_names is not None and len(meta_names) != len(names):
            raise ModelMetadataError(
                f"manifest lists {len(names)} classes {list(names)[:10]} but the model metadata "
                f"lists {len(meta_names)} {list(meta_names)[:10]}"
            )
        if meta_names is not None and meta_names != names:
            log.warning(
                "manifest class names differ from model metadata; using the manifest",
                manifest=list(names),
                metadata=list(meta_names),
            )
        input_size = (int(manifest.input_size[0]), int(manifest.input_size[1]))
        if meta_imgsz is not None and meta_imgsz != input_size:
            raise ModelMetadataError(
                f"manifest input size {input_size} disagrees with model metadata imgsz {meta_imgsz}"
            )
        return ModelInfo(manifest.name, manifest.version, sha256, input_size, names)
    if meta_names is None:
        raise ModelMetadataError(
            f"{model_path} has no 'names' metadata and no manifest was given: class names unknown"
        )
    in_shape = io.inputs[0].shape
    static = (in_shape[2], in_shape[3]) if in_shape[2] > 0 and in_shape[3] > 0 else None
    input_size = meta_imgsz or static
    if input_size is None:
        raise ModelMetadataError(
            f"{model_path} has a dynamic input {list(in_shape)} and no 'imgsz' metadata or manifest"
        )
    return ModelInfo(model_path.stem, 0, sha256, input_size, meta_names)


def load_detector(
    model_path: Path,
    engine_config: OnnxRuntimeConfig | TensorRTConfig,
    *,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    manifest: Manifest | None = None,
) -> Detector:
    """Load a model file into a ready, warmed-up Detector.

    Class names and input size come from `manifest` when given (its sha256 must match the
    file, or, for a TensorRT engine built from the manifest's ONNX, the engine's build
    record must tie the two), else from the model's Ultralytics metadata; either way they
    are checked against the network's input and output shapes. `info.sha256` is the
    manifest artifact's digest (the file's when there is no manifest).

    Raises:
        EngineError: missing/corrupt file, missing provider, not a detector, or
            inconsistent metadata (ModelMetadataError); the message says which.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise EngineError(f"model file not found: {model_path}")
    sha256 = file_sha256(model_path)
    input_hw = None if manifest is None else manifest.input_size
    engine = create_engine(engine_config, input_hw=input_hw)
    io = engine.load(model_path)
    try:
        info = _model_info(model_path, sha256, io, manifest)
        detector = Detector(
            engine,
            io,
            info,
            conf_threshold=conf_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
        )
    except (EngineError, ValueError):
        engine.close()
        raise
    log.info(
        "detector ready",
        model=info.name,
        version=info.version,
        sha256=sha256[:12],
        layout=detector.layout.value,
        input_size=info.input_size,
        classes=len(info.class_names),
    )
    return detector
