"""COCO mAP with pycocotools: ground truth and results (dicts from `coco.py`) -> Figures."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.contracts.gate import Figures


def evaluator_version() -> str:
    from importlib.metadata import version

    return f"pycocotools {version('pycocotools')}"


def coco_figures(
    ground_truth: dict[str, Any], results: list[dict[str, Any]], names: Sequence[str]
) -> Figures:
    """Standard COCO bbox evaluation (IoU .50:.95, all areas, maxDets 100)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results or not ground_truth["annotations"]:
        return Figures(map50=0.0, map50_95=0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [iou, recall, class, area, maxdets]
    ap50_95: dict[str, float] = {}
    ap50: dict[str, float] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        all_iou = precision[:, :, k, 0, -1]
        if (all_iou > -1).any():
            ap50_95[names[cat_id - 1]] = round(float(np.mean(all_iou[all_iou > -1])), 4)
            at50 = precision[0, :, k, 0, -1]
            ap50[names[cat_id - 1]] = round(float(np.mean(at50[at50 > -1])), 4)
    return Figures(
        map50=round(max(float(ev.stats[1]), 0.0), 4),
        map50_95=round(max(float(ev.stats[0]), 0.0), 4),
        ap50_95=ap50_95,
        ap50=ap50,
    )
