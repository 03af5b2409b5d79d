"""Florence-2 on torch via transformers' native `Florence2ForConditionalGeneration`.

Kinds: `torch-fp32` (CPU), `torch-int8` (CPU; `torch.ao.quantization.quantize_dynamic` on
every `nn.Linear` -- deprecated in favour of torchao but still working in torch 2.x, see
docs/florence.md), `torch-fp16-cuda` (GPU). Greedy decoding (`num_beams=1`): the CPU budget
does not allow beams.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from agent.fallback.runtime import (
    FlorenceInfo,
    FlorenceModelError,
    Generation,
    check_torch_dir,
    decoded,
    sha256_files,
)

log = structlog.get_logger(__name__)


class TorchRuntime:
    """transformers Florence-2 on CPU (fp32 / int8) or CUDA (fp16)."""

    def __init__(self, kind: str, threads: int = 1) -> None:
        if kind not in ("torch-fp32", "torch-int8", "torch-fp16-cuda"):
            raise ValueError(f"unknown torch runtime kind {kind!r}")
        self.kind = kind
        self.threads = threads
        self._model = None
        self._processor = None
        self._device = "cuda" if kind == "torch-fp16-cuda" else "cpu"

    def load(self, model_dir: Path) -> FlorenceInfo:
        """Load from a local directory only (`local_files_only=True`), quantise, warm up."""
        weights = check_torch_dir(model_dir)
        import torch
        from transformers import AutoProcessor, Florence2ForConditionalGeneration
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no tqdm bars in the journal

        torch.set_num_threads(self.threads)
        if self._device == "cuda" and not torch.cuda.is_available():
            raise FlorenceModelError("runtime torch-fp16-cuda needs CUDA; none is available")
        try:
            model = Florence2ForConditionalGeneration.from_pretrained(
                model_dir, local_files_only=True, dtype=torch.float32
            ).eval()
            processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise FlorenceModelError(f"{model_dir}: cannot load Florence-2: {err}") from None
        if self.kind == "torch-int8":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)  # quantize_per_tensor deprecation
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
        elif self.kind == "torch-fp16-cuda":
            model = model.to(device="cuda", dtype=torch.float16)
        self._model, self._processor = model, processor
        info = FlorenceInfo(
            name=model_dir.name, sha256=sha256_files(weights), runtime=self.kind, path=model_dir
        )
        self.generate(np.zeros((32, 32, 3), dtype=np.uint8), "<CAPTION>", 2)  # warm-up
        log.info("florence2 loaded", model=info.name, runtime=self.kind, threads=self.threads)
        return info

    @property
    def processor(self):  # noqa: ANN201 - transformers' Florence2Processor
        if self._processor is None:
            raise RuntimeError("runtime not loaded")
        return self._processor

    def generate(
        self, image_bgr: npt.NDArray[np.uint8], prompt: str, max_new_tokens: int
    ) -> Generation:
        """Greedy-decode the answer for an (h, w, 3) uint8 BGR image."""
        import torch
        from PIL import Image

        model, processor = self._model, self.processor  # the property raises before load
        t0 = time.perf_counter()
        rgb = Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        inputs = processor(text=prompt, images=rgb, return_tensors="pt")
        if self._device == "cuda":
            inputs = inputs.to("cuda")
            inputs["pixel_values"] = inputs["pixel_values"].half()
        t1 = time.perf_counter()
        with torch.inference_mode():
            ids = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
            )
        t2 = time.perf_counter()
        return decoded(processor, ids[0].tolist(), image_bgr, (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    def close(self) -> None:
        self._model = None
        self._processor = None
