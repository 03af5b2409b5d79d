"""Time of one Florence-2 fine-tuning step on this CPU, base-sized model with random weights.

What `edge-agent florence finetune` does per optimiser step (agent/fallback/finetune.py):
forward with `labels`, backward, clip, AdamW step; vision tower frozen (default) or trained
(`--train-vision`) or LoRA adapters. Inputs as the processor makes them for Florence-2 base:
768x768 pixels, 577 image tokens + a 12-token prompt, a 30-token `<OD>` answer (about six
boxes). Random weights: the cost does not depend on them.

    PYTHONPATH=. python bench/bench_finetune.py [--threads 2] [--steps 3] [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import time


def base_model():  # noqa: ANN201 - Florence2ForConditionalGeneration
    """Florence-2 base's shapes (DaViT 128..1024, BART 6+6 layers, d_model 768)."""
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    text = dict(
        vocab_size=51289,
        d_model=768,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
    )
    cfg = Florence2Config(
        vision_config={"projection_dim": 768}, text_config=text, image_token_id=51288
    )
    return Florence2ForConditionalGeneration(cfg)


def step_times(mode: str, args: argparse.Namespace) -> list[float]:
    import torch

    torch.manual_seed(0)
    model = base_model()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        from agent.fallback.finetune import LORA_TARGETS

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=LORA_TARGETS))
    elif mode == "frozen-vision":
        model.model.vision_tower.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-6)
    b = args.batch
    ids = torch.cat([torch.full((b, 577), 51288), torch.randint(4, 50000, (b, 12))], 1)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(b, 3, 768, 768),
        "labels": torch.randint(4, 50000, (b, 30)),
    }
    model.train()
    out = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = model(**batch).loss
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        out.append(time.perf_counter() - t0)
    trained = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    print(f"{mode}: trained {trained / 1e6:.1f}M of {total / 1e6:.1f}M parameters", flush=True)
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--modes", default="frozen-vision,lora,full")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| mode | s per step (median) | steps | batch | threads |")
    print("|---|---|---|---|---|")
    for mode in args.modes.split(","):
        times = step_times(mode, args)
        med = statistics.median(times[1:] or times)  # the first step allocates optimiser state
        print(f"| {mode} | {med:.1f} | {args.steps} | {args.batch} | {args.threads} |", flush=True)


if __name__ == "__main__":
    main()
