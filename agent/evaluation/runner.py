"""Run models over a split through the daemon's Detector (letterbox, ONNX Runtime, decode,
NMS: `agent.engines`) and score them with `metrics.coco_figures`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from agent.contracts.gate import EvalReport, ModelFigures, ModelRef
from agent.evaluation.coco import LabelError, coco_ground_truth, coco_results
from agent.evaluation.dataset import DatasetError, Split, split_sha256
from agent.evaluation.metrics import coco_figures, evaluator_version
from agent.util.models import FrozenModel


class DecodeSettings(FrozenModel):
    """Decode settings for mAP: the daemon's NMS IoU, a low score threshold (COCO practice)."""

    conf: float = Field(0.001, ge=0, le=1)
    iou: float = Field(0.45, ge=0, le=1)
    """The daemon's default NMS IoU."""
    max_detections: int = Field(100, ge=1)
    """COCO scores the top 100 per image."""
    threads: int = Field(0, ge=0)

    def describe(self) -> str:
        return (
            f"agent.engines Detector (letterbox, ONNX Runtime CPU, decode, NMS iou {self.iou}), "
            f"conf {self.conf}, max {self.max_detections}/image; {evaluator_version()}"
        )


def read_images(split: Split) -> list[tuple[int, str, object, str]]:
    """(image id, relative name, BGR array, label text) per image; DatasetError if unreadable."""
    import cv2

    out = []
    for image_id, item in enumerate(split.items, start=1):
        image = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{item.image}: not a readable image")
        text = item.label.read_text(encoding="utf-8") if item.label else ""
        out.append((image_id, item.image.relative_to(split.root).as_posix(), image, text))
    return out


def beside_manifest(model: Path) -> Path | None:
    """manifest.json next to the model, when it describes this file (same sha256)."""
    from agent.engines.model_loading import file_sha256, load_manifest

    path = model.parent / "manifest.json"
    if not path.is_file():
        return None
    manifest = load_manifest(path)
    return path if manifest.sha256 == file_sha256(model) else None


def evaluate_model(
    model: Path, images: list[tuple[int, str, object, str]], gt: dict, split: Split,
    settings: DecodeSettings,
) -> ModelFigures:  # fmt: skip
    """One model over the split's images -> its figures."""
    from agent.engines.detector import load_detector
    from agent.engines.model_loading import load_manifest
    from agent.engines.ort import OnnxRuntimeConfig

    t0 = time.monotonic()
    manifest_path = beside_manifest(model)
    manifest = load_manifest(manifest_path) if manifest_path else None
    results = []
    with load_detector(
        model, OnnxRuntimeConfig(threads=settings.threads, warmup_runs=0),
        conf_threshold=settings.conf, iou_threshold=settings.iou,
        max_detections=settings.max_detections, manifest=manifest,
    ) as detector:  # fmt: skip
        info = detector.info
        if tuple(info.class_names) != split.names:
            raise DatasetError(
                f"{model} classes {list(info.class_names)} differ from the dataset's "
                f"{list(split.names)}"
            )
        for image_id, _name, image, _text in images:
            dets, _ = detector.detect(image)  # type: ignore[arg-type]
            results += coco_results(
                image_id, dets.xyxy.tolist(), dets.confidence.tolist(), dets.class_id.tolist()
            )
    figures = coco_figures(gt, results, split.names)
    return ModelFigures(
        path=str(model),
        model=ModelRef(name=info.name, version=info.version, sha256=info.sha256),
        input_size=info.input_size,
        figures=figures,
        seconds=round(time.monotonic() - t0, 2),
    )


def evaluate(
    models: list[Path], split: Split, settings: DecodeSettings,
    progress: Callable[[str], None] = lambda _m: None,
) -> EvalReport:  # fmt: skip
    """Every model on the split, side by side."""
    images = read_images(split)
    try:
        gt = coco_ground_truth(
            [(i, n, img.shape[1], img.shape[0], t) for i, n, img, t in images],  # type: ignore[attr-defined]
            split.names,
        )
    except LabelError as exc:
        raise DatasetError(f"{split.root}: {exc}") from exc
    done = []
    for model in models:
        progress(f"eval: {model} on {len(images)} images of {split.root.name}/{split.name}")
        done.append(evaluate_model(model, images, gt, split, settings))
    return EvalReport(
        data=str(split.root),
        split=split.name,
        split_sha256=split_sha256(split),
        images=len(images),
        boxes=len(gt["annotations"]),
        evaluator=settings.describe(),
        models=done,
    )
