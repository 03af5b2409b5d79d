"""Florence-2 on ONNX Runtime: the five graphs of `edge-agent florence export`, greedy
decoding with the KV cache held in numpy. No torch needed at run time.

Preprocessing uses the checkpoint's own processor (`AutoProcessor`, numpy tensors), so
pixels and prompt ids are exactly those of the torch runtime. The greedy loop applies the
same logits rules as transformers' `generate` for the settings Florence-2 checkpoints use
(`forced_bos_token_id`, `forced_eos_token_id`, `no_repeat_ngram_size`), so an fp32 export
yields the same tokens as torch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from agent.fallback.runtime import (
    FlorenceInfo,
    FlorenceModelError,
    Generation,
    check_onnx_dir,
    decoded,
    sha256_files,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class GreedyConfig:
    """Decoding rules read from generation_config.json (None: rule off)."""

    decoder_start_token_id: int
    eos_token_id: int
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    no_repeat_ngram_size: int = 0


def banned_ngram_tokens(seq: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram already in `seq` (transformers' NoRepeatNGram rule)."""
    if n <= 0 or len(seq) + 1 < n:
        return set()
    prefix = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
    banned = set()
    for i in range(len(seq) - n + 1):
        if tuple(seq[i : i + n - 1]) == prefix:
            banned.add(seq[i + n - 1])
    return banned


def next_token(
    logits: npt.NDArray[np.float32], seq: list[int], max_length: int, cfg: GreedyConfig
) -> int:
    """Greedy choice for one step.

    Args:
        logits: (V,) scores of the next token.
        seq: decoder tokens so far (decoder start token first).
        max_length: len(seq) limit, i.e. 1 + max_new_tokens.
    """
    cur = len(seq)
    if cfg.forced_bos_token_id is not None and cur == 1:
        return cfg.forced_bos_token_id
    if cfg.forced_eos_token_id is not None and cur == max_length - 1:
        return cfg.forced_eos_token_id
    scores = logits.astype(np.float32, copy=True)
    for tok in banned_ngram_tokens(seq, cfg.no_repeat_ngram_size):
        scores[tok] = -np.inf
    return int(np.argmax(scores))


def _read_greedy_config(d: Path, meta: dict[str, object]) -> GreedyConfig:
    gen: dict[str, object] = {}
    path = d / "generation_config.json"
    if path.is_file():
        gen = json.loads(path.read_text(encoding="utf-8"))
    eos = gen.get("eos_token_id", meta.get("eos_token_id"))
    if isinstance(eos, list):
        eos = eos[0]
    return GreedyConfig(
        decoder_start_token_id=int(
            gen.get("decoder_start_token_id", meta["decoder_start_token_id"])
        ),  # type: ignore[arg-type]
        eos_token_id=int(eos),  # type: ignore[arg-type]
        forced_bos_token_id=gen.get("forced_bos_token_id"),  # type: ignore[arg-type]
        forced_eos_token_id=gen.get("forced_eos_token_id"),  # type: ignore[arg-type]
        no_repeat_ngram_size=int(gen.get("no_repeat_ngram_size") or 0),  # type: ignore[arg-type]
    )


class OnnxRuntime:
    """Florence-2 ONNX graphs on ONNX Runtime (CUDA provider when present, else CPU)."""

    def __init__(self, kind: str, threads: int = 1) -> None:
        if kind not in ("onnx-int8", "onnx-fp32"):
            raise ValueError(f"unknown onnx runtime kind {kind!r}")
        self.kind = kind
        self.threads = threads
        self._sessions: dict[str, object] = {}
        self._processor = None
        self._meta: dict[str, object] = {}
        self._greedy: GreedyConfig | None = None

    def load(self, model_dir: Path) -> FlorenceInfo:
        """Open the five graphs, the processor and the decoding rules; warm up."""
        import onnxruntime as ort
        from transformers import AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        meta, graphs = check_onnx_dir(model_dir)
        want = self.kind.split("-")[1]
        if meta.get("precision") != want:
            raise FlorenceModelError(
                f"{model_dir}: holds a {meta.get('precision')} export "
                f"but the runtime is {self.kind}"
                + (" (make one with `edge-agent florence export --int8`)" if want == "int8" else "")
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        try:
            self._sessions = {
                name: ort.InferenceSession(str(path), opts, providers=providers)
                for name, path in graphs.items()
            }
            self._processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as err:
            raise FlorenceModelError(
                f"{model_dir}: cannot open Florence-2 ONNX export: {err}"
            ) from None
        self._meta = meta
        self._greedy = _read_greedy_config(model_dir, meta)
        info = FlorenceInfo(
            name=model_dir.name,
            sha256=sha256_files(list(graphs.values())),
            runtime=self.kind,
            path=model_dir,
        )
        self.generate(np.zeros((32, 32, 3), dtype=np.uint8), "<CAPTION>", 2)  # warm-up
        log.info(
            "florence2 loaded",
            model=info.name,
            runtime=self.kind,
            providers=providers,
            threads=self.threads,
        )
        return info

    def encode(
        self, image_bgr: npt.NDArray[np.uint8], prompt: str
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Run the processor, vision encoder, embeddings and text encoder.

        Returns encoder_hidden_states (1, L, D) float32, attention_mask (1, L) int64 and the
        preprocessing time in ms.
        """
        from PIL import Image

        if self._processor is None:
            raise RuntimeError("runtime not loaded")
        t0 = time.perf_counter()
        rgb = Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        inputs = self._processor(text=prompt, images=rgb, return_tensors="np")
        pre_ms = (time.perf_counter() - t0) * 1e3
        ids = inputs["input_ids"].astype(np.int64)
        mask = inputs["attention_mask"].astype(np.int64)
        s = self._sessions
        feats = s["vision_encoder"].run(
            None, {"pixel_values": inputs["pixel_values"].astype(np.float32)}
        )[0]
        emb = s["embed_tokens"].run(None, {"input_ids": ids})[0]
        where = ids[0] == int(self._meta["image_token_id"])  # type: ignore[arg-type]
        if int(where.sum()) != feats.shape[1]:
            raise ValueError(
                f"{int(where.sum())} image tokens in the prompt but {feats.shape[1]} image features"
            )
        emb[0, where] = feats[0]
        hidden = s["encoder"].run(None, {"inputs_embeds": emb, "attention_mask": mask})[0]
        return hidden, mask, pre_ms

    def generate(
        self, image_bgr: npt.NDArray[np.uint8], prompt: str, max_new_tokens: int
    ) -> Generation:
        """Greedy-decode with the KV cache (numpy arrays passed back each step)."""
        if self._greedy is None or self._processor is None:
            raise RuntimeError("runtime not loaded")
        t0 = time.perf_counter()
        hidden, mask, pre_ms = self.encode(image_bgr, prompt)
        g = self._greedy
        n_layers = int(self._meta["decoder_layers"])  # type: ignore[arg-type]
        seq = [g.decoder_start_token_id]
        max_length = 1 + max_new_tokens
        out = self._sessions["decoder"].run(
            None,
            {
                "input_ids": np.array([seq], dtype=np.int64),
                "encoder_hidden_states": hidden,
                "encoder_attention_mask": mask,
            },
        )
        logits, kv = out[0], out[1:]
        self_kv = [kv[4 * i : 4 * i + 2] for i in range(n_layers)]
        cross_kv = [kv[4 * i + 2 : 4 * i + 4] for i in range(n_layers)]
        while True:
            tok = next_token(logits[0, -1], seq, max_length, g)
            seq.append(tok)
            if tok == g.eos_token_id or len(seq) >= max_length:
                break
            feeds: dict[str, np.ndarray] = {
                "input_ids": np.array([[tok]], dtype=np.int64),
                "encoder_hidden_states": hidden,
                "encoder_attention_mask": mask,
            }
            for i in range(n_layers):
                feeds[f"past_key_values.{i}.decoder.key"] = self_kv[i][0]
                feeds[f"past_key_values.{i}.decoder.value"] = self_kv[i][1]
                feeds[f"past_key_values.{i}.encoder.key"] = cross_kv[i][0]
                feeds[f"past_key_values.{i}.encoder.value"] = cross_kv[i][1]
            out = self._sessions["decoder_with_past"].run(None, feeds)
            logits = out[0]
            self_kv = [out[1 + 2 * i : 3 + 2 * i] for i in range(n_layers)]
        infer_ms = (time.perf_counter() - t0) * 1e3 - pre_ms
        return decoded(self._processor, seq, image_bgr, pre_ms, infer_ms)

    def close(self) -> None:
        self._sessions = {}
        self._processor = None
