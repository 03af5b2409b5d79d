"""Build a tiny random Florence-2 (DaViT + BART, ~130k parameters) with a trained tokenizer.

It is saved in transformers' layout and loaded by the production path
(`from_pretrained(dir, local_files_only=True)`). The tokenizer is a byte-level BPE trained
with `tokenizers` on the task prompts, holding Florence-2's special tokens (`<loc_0>` ..
`<loc_999>`, `<od>`, `<ocr>`, `<cap>`, `<poly>`, `<sep>`, ... and `<image>`), as the
real processor expects. Weights are drawn with a large std so greedy decoding produces varied
tokens instead of stopping at once. Also used by bench/bench_fallback.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

IMAGE_SIZE = 64  # the tiny vision tower sees 64x64 -> 2x2 patches + 1 temporal token
IMAGE_TOKENS = (IMAGE_SIZE // 32) ** 2 + 1
CLASS_NAMES = ("person", "car")

FLORENCE_EXTRA_TOKENS = (
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{i}>" for i in range(1000)]
    + [
        "<cap>",
        "</cap>",
        "<ncap>",
        "</ncap>",
        "<dcap>",
        "</dcap>",
        "<grounding>",
        "</grounding>",
        "<seg>",
        "</seg>",
        "<sep>",
        "<region_cap>",
        "</region_cap>",
        "<region_to_desciption>",
        "</region_to_desciption>",
        "<proposal>",
        "</proposal>",
        "<poly>",
        "</poly>",
        "<and>",
    ]
)
_CORPUS = [
    "What is the text in the image, with regions?",
    "What does the image describe?",
    "Locate the objects with category name in the image.",
    "Locate the objects in the image, with their descriptions.",
    "Locate the phrases in the caption: person. car",
    "a person walking on the street next to a car",
    "person",
    "car",
    "people",
    "cars",
    "bicycle",
    "street",
    "sign",
]


def build_tiny_florence(out: Path, seed: int = 0) -> Path:
    """Write a tiny random Florence-2 model + processor into `out` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        BartTokenizerFast,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    tok.add_special_tokens([*FLORENCE_EXTRA_TOKENS, "<mask>", "<image>"])
    fast = BartTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = CLIPImageProcessor(
        do_resize=True,
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=False,
        resample=3,
    )
    image_processor.image_seq_length = IMAGE_TOKENS
    post = {
        "ocr": {"PATTERN": r"(.+?)" + r"<loc_(\d+)>" * 8, "AREA_THRESHOLD": 0.0},
        "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
        "pure_text": {},
        "description_with_bboxes": {},
        "description_with_polygons": {},
        "polygons": {},
        "bboxes": {},
        "description_with_bboxes_or_polygons": {},
    }
    processor = Florence2Processor(
        image_processor=image_processor,
        tokenizer=fast,
        num_additional_image_tokens=0,
        post_processor_config=post,
    )
    vision = dict(
        depths=[1, 1, 1, 1],
        patch_size=[7, 3, 3, 3],
        patch_stride=[4, 2, 2, 2],
        patch_padding=[3, 1, 1, 1],
        patch_prenorm=[False, True, True, True],
        embed_dim=[8, 16, 16, 32],
        num_heads=[1, 1, 1, 2],
        num_groups=[1, 1, 1, 2],
        window_size=2,
        projection_dim=32,
        max_position_embeddings=8,
        max_temporal_embeddings=4,
        drop_path_rate=0.0,
    )
    text = dict(
        vocab_size=len(fast),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=0,
        forced_eos_token_id=2,
        scale_embedding=False,
    )
    config = Florence2Config(
        vision_config=vision, text_config=text, image_token_id=fast.image_token_id
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.5)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def cached_tiny_florence() -> Path:
    """The tiny model, built once per builder version into a shared temp dir (atomic rename)."""
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    final = Path(tempfile.gettempdir()) / f"edge-agent-tiny-florence-{key}" / "tiny-florence2"
    if (final / "model.safetensors").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent))
    build_tiny_florence(tmp / "tiny-florence2")
    try:
        os.rename(tmp / "tiny-florence2", final)
    except OSError:  # another process won the race; theirs is identical
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return final
