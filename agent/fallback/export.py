"""Export a Florence-2 checkpoint to five ONNX graphs, and quantise them to int8.

No ready exporter exists (optimum has no Florence-2 config), so this writes the graphs of
FACTS.md with `torch.onnx.export` (TorchScript exporter, `dynamo=False`, eager attention):

Graphs (batch 1; L prompt length, S decoder length, T image tokens, D model width):
    vision_encoder.onnx     pixel_values (1, 3, H, W) -> image_features (1, T, D)
    embed_tokens.onnx       input_ids (1, L) -> inputs_embeds (1, L, D)
    encoder.onnx            inputs_embeds, attention_mask (1, L) -> last_hidden_state (1, L, D)
    decoder.onnx            input_ids (1, S), encoder_hidden_states, encoder_attention_mask
                            -> logits (1, S, V), present.{i}.{decoder,encoder}.{key,value}
    decoder_with_past.onnx  input_ids (1, 1), encoder_*, past_key_values.{i}.*
                            -> logits, present.{i}.decoder.{key,value}

Batch is fixed to 1 (one hard frame at a time); sequence axes are dynamic and the example
inputs use lengths >= 2 (length-1 examples specialise the axis, FACTS.md). The processor and
tokenizer files are copied beside the graphs with a `florence_onnx.json` describing them.

int8: `onnxruntime.quantization.quantize_dynamic`; the vision graph only on MatMul/Gemm
(its Conv layers as ConvInteger are slower and distort the features), the others on all
supported ops (MatMul, Gemm, Gather for the embeddings).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.fallback.runtime import (
    ONNX_GRAPHS,
    ONNX_META,
    check_onnx_dir,
    check_torch_dir,
    sha256_files,
)
from agent.util.files import atomic_write_text

log = structlog.get_logger(__name__)

ProgressFn = Callable[[str], None]
COPY_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)


def _wrappers(model):  # noqa: ANN001, ANN202 - torch modules built lazily (torch import)
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    inner = model.model
    lm = inner.language_model
    model.requires_grad_(False)

    class _Holder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.florence = model  # registers the weights as parameters of the exported module

    class Vision(_Holder):
        def forward(self, pixel_values):  # noqa: ANN001, ANN202
            return inner.multi_modal_projector(inner.vision_tower(pixel_values).last_hidden_state)

    class Embed(_Holder):
        def forward(self, input_ids):  # noqa: ANN001, ANN202
            return lm.shared(input_ids)

    class Encoder(_Holder):
        def forward(self, inputs_embeds, attention_mask):  # noqa: ANN001, ANN202
            return lm.encoder(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask
            ).last_hidden_state

    def decode(input_ids, encoder_hidden_states, encoder_attention_mask, cache):  # noqa: ANN001, ANN202
        return lm.decoder(
            input_ids=input_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=cache,
            use_cache=True,
        )

    class Decoder(_Holder):
        def forward(self, input_ids, encoder_hidden_states, encoder_attention_mask):  # noqa: ANN001, ANN202
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            out = decode(input_ids, encoder_hidden_states, encoder_attention_mask, cache)
            flat = []
            for sk, sv, _, ck, cv, _ in out.cache:
                flat += [sk, sv, ck, cv]
            return (model.lm_head(out.last_hidden_state), *flat)

    class DecoderWithPast(_Holder):
        def forward(self, input_ids, encoder_hidden_states, encoder_attention_mask, *past):  # noqa: ANN001, ANN202
            layers = [tuple(past[i : i + 4]) for i in range(0, len(past), 4)]
            out = decode(
                input_ids,
                encoder_hidden_states,
                encoder_attention_mask,
                EncoderDecoderCache(layers),
            )
            flat = []
            for sk, sv, _, _, _, _ in out.cache:
                flat += [sk, sv]
            return (model.lm_head(out.last_hidden_state), *flat)

    return Vision(), Embed(), Encoder(), Decoder(), DecoderWithPast()


def _kv_names(n_layers: int, prefix: str, with_cross: bool) -> list[str]:
    names = []
    for i in range(n_layers):
        names += [f"{prefix}.{i}.decoder.key", f"{prefix}.{i}.decoder.value"]
        if with_cross:
            names += [f"{prefix}.{i}.encoder.key", f"{prefix}.{i}.encoder.value"]
    return names


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: its wrapper module, example inputs, names and dynamic axes."""

    name: str
    module: Any
    args: tuple
    inputs: list[str]
    outputs: list[str]
    axes: dict[str, dict[int, str]]


def _seq_axes(*names: str) -> dict[str, dict[int, str]]:
    return {n: {1: "seq"} for n in names}


def _graph_specs(modules: tuple, example: dict[str, Any], n_layers: int) -> list[GraphSpec]:
    """The five graphs of the module docstring, with the example inputs they are traced on."""
    vision, embed, encoder, decoder, decoder_past = modules
    ids, emb, mask, dec_ids = example["ids"], example["emb"], example["mask"], example["dec_ids"]
    present_all = _kv_names(n_layers, "present", True)
    past_all = _kv_names(n_layers, "past_key_values", True)
    present_self = _kv_names(n_layers, "present", False)
    enc_axes = {"encoder_hidden_states": {1: "enc"}, "encoder_attention_mask": {1: "enc"}}
    enc_inputs = ["encoder_hidden_states", "encoder_attention_mask"]
    return [
        GraphSpec(
            "vision_encoder", vision, (example["pv"],), ["pixel_values"], ["image_features"], {}
        ),
        GraphSpec(
            "embed_tokens",
            embed,
            (ids,),
            ["input_ids"],
            ["inputs_embeds"],
            _seq_axes("input_ids", "inputs_embeds"),
        ),
        GraphSpec(
            "encoder",
            encoder,
            (emb, mask),
            ["inputs_embeds", "attention_mask"],
            ["last_hidden_state"],
            _seq_axes("inputs_embeds", "attention_mask", "last_hidden_state"),
        ),
        GraphSpec(
            "decoder",
            decoder,
            (dec_ids, emb, mask),
            ["input_ids", *enc_inputs],
            ["logits", *present_all],
            {
                "input_ids": {1: "dec"},
                **enc_axes,
                "logits": {1: "dec"},
                **{n: {2: ("dec" if ".decoder." in n else "enc")} for n in present_all},
            },
        ),
        GraphSpec(
            "decoder_with_past",
            decoder_past,
            (dec_ids[:, :1], emb, mask, *example["past"]),
            ["input_ids", *enc_inputs, *past_all],
            ["logits", *present_self],
            {
                **enc_axes,
                **{n: {2: ("past" if ".decoder." in n else "enc")} for n in past_all},
                **{n: {2: "past_plus_1"} for n in present_self},
            },
        ),
    ]


def _export_graph(spec: GraphSpec, out_dir: Path, say: ProgressFn) -> str:
    """Trace one graph to `out_dir/<name>.onnx` (opset 17, TorchScript exporter); its file name."""
    import torch

    t0 = time.perf_counter()
    path = out_dir / f"{spec.name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.module,
            spec.args,
            str(path),
            input_names=spec.inputs,
            output_names=spec.outputs,
            dynamic_axes=spec.axes or None,
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
    size_mb, took_s = path.stat().st_size / 1e6, time.perf_counter() - t0
    say(f"exported {spec.name} ({size_mb:.1f} MB, {took_s:.1f} s)")
    return path.name


def _copy_processor_files(src: Path, dst: Path) -> None:
    for f in COPY_FILES:
        if (src / f).is_file() and src != dst:
            shutil.copy2(src / f, dst / f)


def export_onnx(model_dir: Path, out_dir: Path, progress: ProgressFn | None = None) -> Path:
    """Export the Florence-2 in `model_dir` (transformers layout) to fp32 ONNX graphs in `out_dir`.

    Returns `out_dir`. Raises FlorenceModelError for a missing/incomplete/non-Florence dir.
    """
    import torch
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    say = progress or (lambda _m: None)
    weights = check_torch_dir(model_dir)
    model = Florence2ForConditionalGeneration.from_pretrained(
        model_dir, local_files_only=True, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ip = AutoProcessor.from_pretrained(model_dir, local_files_only=True).image_processor
    h, w = int(ip.size["height"]), int(ip.size["width"])
    text_cfg = model.config.text_config
    n_layers, d_model = int(text_cfg.decoder_layers), int(text_cfg.d_model)
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = _wrappers(model)
    L, S = 6, 2  # example lengths >= 2 so the exporter keeps the axes dynamic
    example: dict[str, Any] = {
        "pv": torch.randn(1, 3, h, w),
        "ids": torch.randint(3, 100, (1, L)),
        "emb": torch.randn(1, L, d_model),
        "mask": torch.ones(1, L, dtype=torch.int64),
        "dec_ids": torch.randint(3, 100, (1, S)),
    }
    with torch.no_grad():
        example["past"] = list(modules[3](example["dec_ids"], example["emb"], example["mask"])[1:])
    files = {
        spec.name: _export_graph(spec, out_dir, say)
        for spec in _graph_specs(modules, example, n_layers)
    }
    _copy_processor_files(model_dir, out_dir)
    meta = {
        "format": "edge.florence-onnx/1",
        "precision": "fp32",
        "source": model_dir.name,
        "source_sha256": sha256_files(weights),
        "graphs": files,
        "decoder_layers": n_layers,
        "image_size": [h, w],
        "image_token_id": int(model.config.image_token_id),
        "decoder_start_token_id": int(text_cfg.decoder_start_token_id),
        "eos_token_id": int(text_cfg.eos_token_id),
    }
    atomic_write_text(out_dir / ONNX_META, json.dumps(meta, indent=1))
    log.info("florence2 exported to onnx", out=str(out_dir), graphs=list(files))
    return out_dir


def quantize_int8(src_dir: Path, out_dir: Path, progress: ProgressFn | None = None) -> Path:
    """Dynamic int8 quantisation of an fp32 export (`src_dir`) into `out_dir`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    say = progress or (lambda _m: None)
    meta, graphs = check_onnx_dir(src_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ONNX_GRAPHS:
        t0 = time.perf_counter()
        target = out_dir / f"{name}.int8.onnx"
        ops = ["MatMul", "Gemm"] if name == "vision_encoder" else None
        quantize_dynamic(
            str(graphs[name]),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=ops,
        )
        files[name] = target.name
        say(
            f"quantised {name} ({graphs[name].stat().st_size / 1e6:.1f} -> "
            f"{target.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)"
        )
    _copy_processor_files(src_dir, out_dir)
    meta = {**meta, "precision": "int8", "graphs": files}
    atomic_write_text(out_dir / ONNX_META, json.dumps(meta, indent=1))
    return out_dir
