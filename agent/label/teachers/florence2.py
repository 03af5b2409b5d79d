"""Florence-2 as a labelling teacher (`edge-agent label --teacher florence2`).

Open vocabulary: it is told the wanted labels. With `<CAPTION_TO_PHRASE_GROUNDING>` they are
the phrase; with `<OD>` / `<DENSE_REGION_CAPTION>` / `<OCR_WITH_REGION>` Florence-2 names
what it sees and the labels keep the matches (case-insensitive, plural 's' tolerated).
Florence-2 gives no scores: confidence is NaN, which passes any `--conf` threshold.
With `segment` (`edge-agent label --task segment`) each wanted box is then outlined by a
second run, `<REGION_TO_SEGMENTATION>` prompted with the box's location tokens; polygon tasks
(`<REFERRING_EXPRESSION_SEGMENTATION>`, `<OPEN_VOCABULARY_DETECTION>`) keep their own polygons.

The registry constructor reads its settings from keyword arguments or, when the label CLI
does not pass them, from the environment:
    EDGE_AGENT_FLORENCE_MODEL    model directory or hub id (required)
    EDGE_AGENT_FLORENCE_TASK     task token (default <CAPTION_TO_PHRASE_GROUNDING>)
    EDGE_AGENT_FLORENCE_RUNTIME  torch-fp32 | torch-int8 | torch-fp16-cuda | onnx-int8 | onnx-fp32
                                 (default torch-int8)
    EDGE_AGENT_FLORENCE_THREADS  CPU threads (default: one per core)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agent.fallback.child import FlorenceInputError, check_image
from agent.fallback.factory import create_runtime
from agent.fallback.parse import (
    FlorenceParseError,
    Region,
    UnknownTaskError,
    build_prompt,
    check_task,
    parse_generation,
)
from agent.fallback.runtime import FlorenceModelError, FlorenceRuntime, resolve_model
from agent.label.teachers import LabelledBox, TeacherError

RUNTIMES = ("torch-fp32", "torch-int8", "torch-fp16-cuda", "onnx-int8", "onnx-fp32")
BOX_TASKS = (
    "<OD>",
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<OCR_WITH_REGION>",
    "<DENSE_REGION_CAPTION>",
    "<OPEN_VOCABULARY_DETECTION>",
    "<REFERRING_EXPRESSION_SEGMENTATION>",
)
SEGMENT_TASK = "<REGION_TO_SEGMENTATION>"


class Florence2Teacher:
    """Florence-2 boxes for the wanted labels."""

    name = "florence2"
    vocabulary: frozenset[str] | None = None

    def __init__(
        self,
        labels: Sequence[str],
        model: str,
        task: str = "<CAPTION_TO_PHRASE_GROUNDING>",
        runtime: str = "torch-int8",
        max_new_tokens: int = 256,
        threads: int | None = None,
        segment: bool = False,
    ) -> None:
        try:
            check_task(task)
        except UnknownTaskError as err:
            raise TeacherError(str(err)) from None
        if task not in BOX_TASKS:
            raise TeacherError(f"task {task} gives no boxes; use one of {', '.join(BOX_TASKS)}")
        if runtime not in RUNTIMES:
            raise TeacherError(
                f"unknown Florence-2 runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
            )
        self.labels = tuple(labels)
        self.task = task
        self.segment = segment
        self.max_new_tokens = max_new_tokens
        self.prompt = build_prompt(task, self.labels)
        self.parse_errors = 0
        self._rt: FlorenceRuntime | None = create_runtime(
            runtime, threads=threads or (os.cpu_count() or 1)
        )  # type: ignore[arg-type]
        try:
            self.info = self._rt.load(resolve_model(model))
        except FlorenceModelError as err:
            raise TeacherError(str(err)) from None

    @classmethod
    def from_labels(cls, labels: Sequence[str], **kwargs: object) -> Florence2Teacher:
        """Registry constructor; settings from kwargs, else EDGE_AGENT_FLORENCE_* variables."""
        model = kwargs.pop("model", None) or os.environ.get("EDGE_AGENT_FLORENCE_MODEL")
        if not model:
            raise TeacherError(
                "florence2 teacher needs a model: set EDGE_AGENT_FLORENCE_MODEL to a Florence-2 "
                "directory or hub id (e.g. florence-community/Florence-2-base)"
            )
        task = kwargs.pop("task", None) or os.environ.get(
            "EDGE_AGENT_FLORENCE_TASK", "<CAPTION_TO_PHRASE_GROUNDING>"
        )
        runtime = kwargs.pop("runtime", None) or os.environ.get(
            "EDGE_AGENT_FLORENCE_RUNTIME", "torch-int8"
        )
        segment = str(kwargs.pop("segment", "")).lower() in ("1", "true", "yes")
        threads = os.environ.get("EDGE_AGENT_FLORENCE_THREADS")
        if threads and "threads" not in kwargs:
            if not threads.isdigit() or int(threads) < 1:
                raise TeacherError(f"EDGE_AGENT_FLORENCE_THREADS must be >= 1, got {threads!r}")
            kwargs["threads"] = int(threads)
        return cls(
            labels,
            str(model),
            task=str(task),
            runtime=str(runtime),
            segment=segment,
            **kwargs,  # type: ignore[arg-type]
        )

    def detect(self, image: npt.NDArray[np.uint8]) -> list[LabelledBox]:
        """Florence-2 boxes in one (h, w, 3) uint8 BGR image; labels matched to the wanted ones.

        An answer that does not parse yields no boxes and is counted in `parse_errors`
        (the label run goes on; the count is the caller's to report).
        """
        if self._rt is None:
            raise TeacherError("teacher is closed")
        try:
            check_image(image)
        except FlorenceInputError as err:
            raise TeacherError(str(err)) from None
        gen = self._rt.generate(image, self.prompt, self.max_new_tokens)
        try:
            res = parse_generation(self.task, gen.text, gen.image_size, self.labels)
        except FlorenceParseError:
            self.parse_errors += 1
            return []
        out = []
        d = res.detections
        for i in range(len(d)):
            cid = int(d.class_id[i])
            label = self.labels[cid] if cid >= 0 else res.labels[i]
            x1, y1, x2, y2 = (float(v) for v in d.xyxy[i])
            polys: tuple[tuple[tuple[float, float], ...], ...] = ()
            if self.segment and label in self.labels:
                polys = self._outline(image, (x1, y1, x2, y2), label)
            elif res.polygons:
                polys = _as_tuples(res.polygons[i])
            out.append(LabelledBox(label, float("nan"), x1, y1, x2, y2, polys))
        return out

    def _outline(
        self, image: npt.NDArray[np.uint8], box: tuple[float, float, float, float], label: str
    ) -> tuple[tuple[tuple[float, float], ...], ...]:
        """Polygons of one box via <REGION_TO_SEGMENTATION> (none when the answer is unusable)."""
        if self._rt is None:
            raise TeacherError("teacher is closed")
        size = (int(image.shape[1]), int(image.shape[0]))
        region = Region(box=box, label=label)
        prompt = build_prompt(SEGMENT_TASK, self.labels, region=region, image_size=size)
        gen = self._rt.generate(image, prompt, self.max_new_tokens)
        try:
            res = parse_generation(SEGMENT_TASK, gen.text, size, self.labels, region=region)
        except FlorenceParseError:
            self.parse_errors += 1
            return ()
        return tuple(p for inst in res.polygons for p in _as_tuples(inst))

    def close(self) -> None:
        """Free the model. Safe to call twice."""
        if self._rt is not None:
            self._rt.close()
            self._rt = None


def _as_tuples(
    polys: tuple[npt.NDArray[np.float32], ...],
) -> tuple[tuple[tuple[float, float], ...], ...]:
    """(k, 2) arrays -> tuples of (x, y) floats (what LabelledBox holds)."""
    return tuple(tuple((float(x), float(y)) for x, y in p) for p in polys)
