"""Fine-tune Florence-2 on a labelled YOLO dataset (`edge-agent florence finetune`).

The transformers recipe for detection targets (as in Hugging Face's and Roboflow's Florence-2
fine-tuning write-ups): each image becomes (prompt, answer) pairs built by
`agent.fallback.targets` (`<OD>` and optionally grounding, location tokens from the boxes),
the model is trained with its own seq2seq cross-entropy (`labels=` the answer ids, padding
ignored), AdamW with a linear decay, gradients clipped at 1.0. The vision tower is frozen by
default (the labels are few; the DaViT features are what the model already does well);
`lora` trains rank-r adapters on the language model's linear layers instead of the weights
and merges them at the end, so the result is a plain transformers directory either way.

Deterministic for a seed on one machine and thread count: torch's RNG (dropout, LoRA init)
and the shuffle are seeded. The result is written to a temporary sibling and renamed, with
`finetune_report.json` (losses, time, parameters trained / total) inside.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from agent.fallback.runtime import FlorenceModelError, check_torch_dir
from agent.fallback.targets import TARGET_TASKS, Target, targets_for
from agent.fallback.yolo_dataset import Sample, read_split
from agent.util.models import FrozenModel

if TYPE_CHECKING:
    import torch
    from transformers import Florence2Processor

    Model = torch.nn.Module  # Florence2ForConditionalGeneration, or its peft wrapper

REPORT_FILE = "finetune_report.json"
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)$"
"""peft target: every attention and MLP projection of the BART encoder/decoder."""


class FinetuneError(Exception):
    """Fine-tuning cannot start or finish; the message says why."""


class FinetuneOptions(FrozenModel):
    """How to fine-tune."""

    epochs: int = Field(10, ge=1)
    """Passes over the training pairs."""
    lr: float = Field(1e-6, gt=0)
    """AdamW learning rate (HF's full fine-tune: 1e-6)."""
    batch_size: int = Field(4, ge=1)
    """Pairs per optimiser step."""
    seed: int = 0
    """Seed of the shuffle, dropout and LoRA initialisation."""
    tasks: tuple[str, ...] = ("<OD>",)
    """Target tasks, from TARGET_TASKS."""
    freeze_vision: bool = True
    """Keep the DaViT vision tower fixed."""
    lora: bool = False
    """Train LoRA adapters (merged at the end)."""
    lora_rank: int = Field(8, ge=1)
    """LoRA rank r (alpha = r)."""
    split: str = "train"
    """Dataset split to train on."""
    device: str = "cpu"
    """torch device: cpu or cuda."""
    threads: int | None = Field(None, ge=1)
    """torch CPU threads (None: torch's default, one per core)."""


class FinetuneReport(FrozenModel):
    """What a fine-tuning run did (written as finetune_report.json)."""

    base: str
    """Base model directory."""
    dataset: str
    """Dataset directory."""
    options: FinetuneOptions
    """The options used."""
    images: int
    """Training images."""
    pairs: int
    """Training (prompt, answer) pairs."""
    steps: int
    """Optimiser steps."""
    loss_per_epoch: list[float]
    """Mean training loss of each epoch."""
    seconds: float
    """Wall time of the training loop."""
    params_trained: int
    """Parameters updated (LoRA: adapter parameters)."""
    params_total: int
    """All parameters of the trained model."""
    torch: str
    """torch version."""
    transformers: str
    """transformers version."""


def training_pairs(samples: Sequence[Sample], tasks: Sequence[str]) -> list[tuple[Path, Target]]:
    """(image, target) pairs of every sample for every task, in sample order."""
    return [(s.image, t) for s in samples for t in targets_for(s.objects, s.size, tasks)]


def load_trainable(base: Path, opts: FinetuneOptions) -> tuple[Model, Florence2Processor]:
    """Load the base model for training: vision frozen or LoRA adapters attached."""
    import torch
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    check_torch_dir(base)
    torch.manual_seed(opts.seed)
    try:
        model = Florence2ForConditionalGeneration.from_pretrained(
            base, local_files_only=True, dtype=torch.float32
        )
        processor = AutoProcessor.from_pretrained(base, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FlorenceModelError(f"{base}: cannot load Florence-2: {err}") from None
    if opts.freeze_vision:
        model.model.vision_tower.requires_grad_(False)
    if opts.lora:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=opts.lora_rank,
            lora_alpha=opts.lora_rank,
            lora_dropout=0.05,
            target_modules=LORA_TARGETS,
            bias="none",
        )
        model = get_peft_model(model, cfg)
    return model.to(opts.device), processor


def encode(
    processor: Florence2Processor, pairs: Sequence[tuple[Path, Target]], device: str
) -> dict[str, torch.Tensor]:
    """Processor inputs plus `labels` (<s> answer </s>, padding = -100) for a batch."""
    import torch
    from PIL import Image

    images = []
    for path, _ in pairs:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    inputs = processor(
        text=[t.prompt for _, t in pairs], images=images, return_tensors="pt", padding=True
    )
    tok = processor.tokenizer
    ids = [
        [tok.bos_token_id, *tok(t.answer, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        for _, t in pairs
    ]
    width = max(len(i) for i in ids)
    labels = torch.full((len(ids), width), -100, dtype=torch.long)
    for row, seq in enumerate(ids):
        labels[row, : len(seq)] = torch.tensor(seq)
    batch = {k: v.to(device) for k, v in inputs.items()}
    batch["labels"] = labels.to(device)
    return batch


@dataclass(frozen=True)
class TargetFit:
    """How well a model predicts the answers, with the right answer fed in (teacher forcing).

    Attributes:
        nll: mean negative log-likelihood per answer token (nats).
        accuracy: share of answer tokens that are the model's top choice.
    """

    nll: float
    accuracy: float


def target_fit(
    model: Model,
    processor: Florence2Processor,
    pairs: Sequence[tuple[Path, Target]],
    device: str = "cpu",
) -> TargetFit:
    """NLL and top-1 accuracy of the answers' tokens over `pairs` (eval mode, no gradients)."""
    import torch

    model.eval()
    total, right, tokens = 0.0, 0, 0
    with torch.no_grad():
        for pair in pairs:
            batch = encode(processor, [pair], device)
            out = model(**batch)
            mask = batch["labels"] != -100
            n = int(mask.sum())
            total += float(out.loss) * n
            right += int((out.logits.argmax(-1) == batch["labels"])[mask].sum())
            tokens += n
    return TargetFit(nll=total / max(tokens, 1), accuracy=right / max(tokens, 1))


def _count(model: Model) -> tuple[int, int]:
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trained, sum(p.numel() for p in model.parameters())


def train(
    model: Model,
    processor: Florence2Processor,
    pairs: Sequence[tuple[Path, Target]],
    opts: FinetuneOptions,
    progress: bool,
) -> list[float]:
    """The training loop; returns the mean loss of each epoch."""
    import torch
    from tqdm import tqdm

    rng = random.Random(opts.seed)
    torch.manual_seed(opts.seed)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise FinetuneError("nothing to train: every parameter is frozen")
    optim = torch.optim.AdamW(params, lr=opts.lr)
    per_epoch = -(-len(pairs) // opts.batch_size)
    total = per_epoch * opts.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: 1.0 - step / total)
    bar = tqdm(total=total, desc="finetune", unit="step", file=sys.stderr, disable=not progress)
    losses: list[float] = []
    for _ in range(opts.epochs):
        order = list(pairs)
        rng.shuffle(order)
        model.train()
        if opts.freeze_vision:
            _vision(model).eval()  # no drop-path noise in a frozen tower
        epoch = []
        for i in range(0, len(order), opts.batch_size):
            loss = model(**encode(processor, order[i : i + opts.batch_size], opts.device)).loss
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            epoch.append(float(loss.detach()))
            bar.set_postfix(loss=f"{epoch[-1]:.4f}")
            bar.update(1)
        losses.append(sum(epoch) / len(epoch))
    bar.close()
    return losses


def _vision(model: Model) -> torch.nn.Module:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.model.vision_tower


def _prepare_out(out: Path) -> Path:
    """A temporary sibling of `out` to write into; refuse a non-empty `out`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FinetuneError(f"output {out} exists and is not empty; choose a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def finetune(
    dataset: Path, base: Path, out: Path, opts: FinetuneOptions, progress: bool = True
) -> FinetuneReport:
    """Fine-tune `base` on `dataset` and write the result (transformers layout) to `out`.

    Raises:
        FinetuneError: bad dataset, options or output; FlorenceModelError: unusable base.
    """
    import torch
    import transformers

    bad = [t for t in opts.tasks if t not in TARGET_TASKS]
    if bad or not opts.tasks:
        raise FinetuneError(f"cannot fine-tune on {bad or 'no task'}; use {TARGET_TASKS}")
    try:
        samples = read_split(dataset, opts.split)
    except ValueError as err:
        raise FinetuneError(str(err)) from None
    pairs = training_pairs(samples, opts.tasks)
    if not pairs:
        raise FinetuneError(f"{dataset}: no training pairs for {', '.join(opts.tasks)}")
    tmp = _prepare_out(out)
    try:
        model, processor = load_trainable(base, opts)
        t0 = time.perf_counter()
        losses = train(model, processor, pairs, opts, progress)
        seconds = time.perf_counter() - t0
        trained, total = _count(model)
        if opts.lora:
            model = model.merge_and_unload()
        model.eval().to("cpu").save_pretrained(tmp)
        processor.save_pretrained(tmp)
        report = FinetuneReport(
            base=str(base),
            dataset=str(dataset),
            options=opts,
            images=len(samples),
            pairs=len(pairs),
            steps=len(losses) * -(-len(pairs) // opts.batch_size),
            loss_per_epoch=[round(v, 6) for v in losses],
            seconds=round(seconds, 3),
            params_trained=trained,
            params_total=total,
            torch=torch.__version__,
            transformers=transformers.__version__,
        )
        (tmp / REPORT_FILE).write_text(report.model_dump_json(indent=1) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def read_report(model_dir: Path) -> dict[str, object]:
    """The finetune_report.json of a fine-tuned model directory."""
    return json.loads((model_dir / REPORT_FILE).read_text(encoding="utf-8"))
