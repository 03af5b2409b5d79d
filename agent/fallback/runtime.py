"""The Florence-2 runtime interface and model-directory checks (the factory: `factory.py`).

A runtime turns (BGR frame, task prompt) into Florence-2's decoded text; parsing that text
is shared (`agent.fallback.parse`). Two backends: `torch_runtime` (transformers' native
`Florence2ForConditionalGeneration`, fp32 / int8 / fp16-cuda) and `onnx_runtime` (the five
graphs written by `edge-agent florence export`, greedy decoding with a numpy KV cache).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agent.util.files import file_sha256

ONNX_META = "florence_onnx.json"
ONNX_GRAPHS = ("vision_encoder", "embed_tokens", "encoder", "decoder", "decoder_with_past")
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class FlorenceModelError(Exception):
    """A Florence-2 model cannot be used: missing, incomplete or not Florence-2."""


@dataclass(frozen=True)
class FlorenceInfo:
    """Identity of a loaded Florence-2 model.

    Attributes:
        name: model name (the directory name, or the hub id's last part).
        sha256: SHA-256 over the weight files (one file: its digest; several: digest of
            'name digest' lines in name order).
        runtime: the runtime kind that loaded it.
        path: the local directory it was loaded from.
    """

    name: str
    sha256: str
    runtime: str
    path: Path


@dataclass(frozen=True)
class Generation:
    """Florence-2's answer for one image.

    Attributes:
        text: decoded tokens, special tokens kept (what `post_process_generation` expects).
        token_ids: generated ids, decoder start token first.
        image_size: (width, height) of the input frame.
        pre_ms: image and prompt preprocessing.
        infer_ms: vision encoder + text encoder + decoding.
    """

    text: str
    token_ids: tuple[int, ...]
    image_size: tuple[int, int]
    pre_ms: float
    infer_ms: float


def decoded(
    processor: Any,
    seq: Sequence[int],
    image_bgr: npt.NDArray[np.uint8],
    pre_ms: float,
    infer_ms: float,
) -> Generation:
    """The `Generation` of the generated ids `seq` for `image_bgr`, decoded by the model's own
    processor with the special tokens kept (what `post_process_generation` expects)."""
    return Generation(
        text=processor.batch_decode([list(seq)], skip_special_tokens=False)[0],
        token_ids=tuple(int(i) for i in seq),
        image_size=(int(image_bgr.shape[1]), int(image_bgr.shape[0])),
        pre_ms=pre_ms,
        infer_ms=infer_ms,
    )


@runtime_checkable
class FlorenceRuntime(Protocol):
    """Load a Florence-2 model, generate for one image at a time, close."""

    def load(self, model_dir: Path) -> FlorenceInfo:
        """Load (and warm up) the model in `model_dir`; raise FlorenceModelError if unusable."""
        ...

    def generate(
        self, image_bgr: npt.NDArray[np.uint8], prompt: str, max_new_tokens: int
    ) -> Generation:
        """Greedy-decode Florence-2's answer for an (h, w, 3) uint8 BGR image and a prompt."""
        ...

    def close(self) -> None:
        """Free the model. Safe to call twice."""
        ...


def sha256_files(paths: list[Path]) -> str:
    """SHA-256 of one file, or of the sorted 'name digest' lines of several files.

    Not `agent.util.files.files_sha256` (one digest over the concatenated bytes): this form
    names each file, and it is what FlorenceInfo.sha256 and the export metadata already carry.
    """
    digests = [(p.name, file_sha256(p)) for p in sorted(paths, key=lambda q: q.name)]
    if len(digests) == 1:
        return digests[0][1]
    return hashlib.sha256("".join(f"{n} {d}\n" for n, d in digests).encode()).hexdigest()


def _check_processor_files(d: Path) -> None:
    missing = [f for f in PROCESSOR_FILES if not (d / f).is_file()]
    if (
        not (d / "preprocessor_config.json").is_file()
        and not (d / "processor_config.json").is_file()
    ):
        missing.append("processor_config.json (or preprocessor_config.json)")
    if missing:
        raise FlorenceModelError(f"{d}: incomplete Florence-2 model: missing {', '.join(missing)}")


def check_torch_dir(d: Path) -> list[Path]:
    """Check a transformers Florence-2 directory; return its weight files.

    Raises FlorenceModelError naming what is missing, or that it is not Florence-2.
    """
    if not d.is_dir():
        raise FlorenceModelError(f"{d}: Florence-2 model directory does not exist")
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise FlorenceModelError(f"{d}: incomplete Florence-2 model: missing config.json")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FlorenceModelError(f"{cfg_path}: unreadable config: {err}") from None
    model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
    if model_type != "florence2":
        hint = (
            " (the remote-code 'microsoft/Florence-2-*' layout is not supported; use "
            "'florence-community/Florence-2-*')"
            if model_type == "florence2_remote" or (isinstance(cfg, dict) and "auto_map" in cfg)
            else ""
        )
        raise FlorenceModelError(f"{d}: not a Florence-2 model (model_type {model_type!r}){hint}")
    weights = sorted(d.glob("*.safetensors")) or sorted(d.glob("pytorch_model*.bin"))
    if not weights:
        raise FlorenceModelError(f"{d}: incomplete Florence-2 model: no *.safetensors weights")
    _check_processor_files(d)
    return weights


def check_onnx_dir(d: Path) -> tuple[dict[str, object], dict[str, Path]]:
    """Check an ONNX export directory; return its metadata and graph paths by graph name."""
    if not d.is_dir():
        raise FlorenceModelError(f"{d}: Florence-2 ONNX directory does not exist")
    meta_path = d / ONNX_META
    if not meta_path.is_file():
        raise FlorenceModelError(
            f"{d}: not a Florence-2 ONNX export (no {ONNX_META}); run `edge-agent florence export`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        graphs = {g: d / meta["graphs"][g] for g in ONNX_GRAPHS}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FlorenceModelError(f"{meta_path}: invalid export metadata: {err!r}") from None
    missing = [p.name for p in graphs.values() if not p.is_file()]
    if missing:
        raise FlorenceModelError(
            f"{d}: incomplete Florence-2 ONNX export: missing {', '.join(missing)}"
        )
    _check_processor_files(d)
    return meta, graphs


def resolve_model(model: str, state_dir: Path | None = None) -> Path:
    """A local directory as is; a hub id ('owner/name') fetched into the HF cache first.

    Raises FlorenceModelError when a local path does not exist or a hub id cannot be fetched
    (no internet and not cached).
    """
    p = Path(model).expanduser()
    if p.exists() or model.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(model):
        if not p.is_dir():
            raise FlorenceModelError(f"{p}: Florence-2 model directory does not exist")
        return p
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as err:  # pragma: no cover - huggingface_hub ships with transformers
        raise FlorenceModelError(f"hub id {model!r} needs huggingface_hub: {err}") from None
    try:
        return Path(snapshot_download(model))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        raise FlorenceModelError(
            f"cannot fetch {model!r} from the Hugging Face hub and no cached copy: {err}"
        ) from None
