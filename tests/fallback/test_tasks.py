"""Every Florence-2 task: our numpy answer equals transformers' `post_process_generation` on
token sequences of the tiny model (crafted with location tokens, and really generated), the
prompts the processor accepts, and the pixel box <-> location token round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.fallback.config import TASKS
from agent.fallback.parse import FlorenceParseError, parse_generation
from agent.fallback.postprocess import TASK_KINDS, dequantize, post_process
from agent.fallback.prompts import (
    REGION_TASKS,
    Region,
    build_prompt,
    quantize_box,
    region_tokens,
)
from tests.fallback.tiny_florence import CLASS_NAMES

SIZE = (768, 576)  # width, height
BOX = "<loc_100><loc_200><loc_300><loc_400>"
POLY = "<loc_62><loc_10><loc_300><loc_10><loc_300><loc_400><loc_62><loc_400>"

# task -> answers (text without <s>/</s>) to feed as token sequences; location tokens where
# the random tiny model would rarely produce a parseable answer.
CRAFTED: dict[str, list[str]] = {
    "<OCR>": ["STOP", ""],
    "<DETAILED_CAPTION>": ["a person walking on the street next to a car"],
    "<MORE_DETAILED_CAPTION>": ["a street. a car is next to a person"],
    "<REGION_PROPOSAL>": [BOX + "<loc_0><loc_0><loc_999><loc_999>", "", "<loc_1><loc_2>"],
    "<OPEN_VOCABULARY_DETECTION>": [
        "car" + BOX,  # boxes
        "person<poly>" + POLY + "</poly>",  # polygons
        "person<poly>" + POLY + "<sep>" + POLY + "</poly>car<poly>" + POLY + "</poly>",
        "",
    ],
    "<REFERRING_EXPRESSION_SEGMENTATION>": [
        POLY,  # one polygon, no label
        POLY + "<sep>" + "<loc_5><loc_6><loc_7><loc_8><loc_9><loc_10><loc_11>",  # odd count
        "<poly>" + POLY + "</poly><poly>" + POLY + "</poly>",
        "",
    ],
    "<REGION_TO_SEGMENTATION>": [POLY, "<loc_500><loc_500><loc_600><loc_500><loc_550><loc_700>"],
    "<OD>": ["car" + BOX + "person<loc_0><loc_0><loc_999><loc_999>"],
    "<CAPTION_TO_PHRASE_GROUNDING>": ["person" + BOX + "the image" + BOX],
    "<DENSE_REGION_CAPTION>": ["a red bus" + BOX + BOX],
    "<OCR_WITH_REGION>": ["STOP" + POLY],
    "<CAPTION>": ["a car"],
    "<REGION_TO_CATEGORY>": ["car" + BOX],
    "<REGION_TO_DESCRIPTION>": ["a red car" + BOX],
    "<REGION_TO_OCR>": ["STOP"],
}


@pytest.fixture(scope="module")
def processor(tiny_model: Path):  # noqa: ANN201 - transformers' Florence2Processor
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model, local_files_only=True)


def assert_same_answer(ours: object, ref: object, where: str = "") -> None:
    """Same structure, keys, lengths and strings; our float coordinates (exact bin centres)
    truncate to theirs."""
    if isinstance(ref, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(ref), where
        for k in ref:
            assert_same_answer(ours[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref), f"{where}: {ours} vs {ref}"
        for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
            assert_same_answer(a, b, f"{where}[{i}]")
    elif isinstance(ref, str):
        assert ours == ref, where
    else:
        # transformers computes the centre in float32 and truncates: where the exact centre is
        # an integer (e.g. bin 62 of 768 px is 48.0) it may land just below and give 47
        exact_int = abs(ours - round(ours)) < 1e-6 and round(ours) == ref + 1
        assert isinstance(ours, float) and (int(ours) == ref or exact_int), (
            f"{where}: {ours} vs {ref}"
        )


def _as_tokens(processor, answer: str) -> str:  # noqa: ANN001
    """The decoded text of the token sequence </s><s>answer</s>, as generate() would give it."""
    ids = processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
    return processor.batch_decode([[2, 0, *ids, 2]], skip_special_tokens=False)[0]


def test_every_transformers_task_is_run() -> None:
    """The product runs every task of transformers' Florence-2 table, nothing more."""
    assert set(TASKS) == set(TASK_KINDS)


@pytest.mark.parametrize("task", sorted(CRAFTED))
def test_crafted_tokens_match_transformers(processor, task: str) -> None:  # noqa: ANN001
    """For each task our answer on crafted token sequences equals post_process_generation's."""
    for answer in CRAFTED[task]:
        text = _as_tokens(processor, answer)
        ref = processor.post_process_generation(text, task=task, image_size=SIZE)
        assert_same_answer(post_process(task, text, SIZE), ref, f"{task} {answer!r}")


def test_generated_tokens_match_transformers(tiny_model: Path, processor) -> None:  # noqa: ANN001
    """Real greedy generation of the tiny model, every task: same answer as transformers."""
    from agent.fallback.factory import create_runtime

    rs = np.random.RandomState(5)
    img = rs.randint(0, 255, (48, 64, 3), dtype=np.uint8)
    size = (64, 48)
    rt = create_runtime("torch-fp32")
    rt.load(tiny_model)
    region = Region(box=(8.0, 4.0, 40.0, 30.0), label="car", class_id=1)
    try:
        for task in TASKS:
            prompt = build_prompt(task, CLASS_NAMES, region=region, image_size=size)
            gen = rt.generate(img, prompt, 24)
            ref = processor.post_process_generation(gen.text, task=task, image_size=size)
            assert_same_answer(post_process(task, gen.text, size), ref, task)
    finally:
        rt.close()


@pytest.mark.parametrize("size", [(768, 576), (1920, 1080), (640, 480), (7, 5), (1281, 719)])
def test_every_bin_truncates_like_transformers(processor, size: tuple[int, int]) -> None:  # noqa: ANN001
    """All 1000 bins of x and y, as one polygon: our coordinates truncate to transformers'."""
    text = "</s><s>" + "".join(f"<loc_{n}><loc_{999 - n}>" for n in range(1000)) + "</s>"
    task = "<REFERRING_EXPRESSION_SEGMENTATION>"
    ref = processor.post_process_generation(text, task=task, image_size=size)
    assert_same_answer(post_process(task, text, size), ref, str(size))


@pytest.mark.parametrize("size", [(768, 576), (64, 48), (1920, 1080), (7, 5)])
def test_location_bins_round_trip(size: tuple[int, int]) -> None:
    """Every bin's centre quantises back to the same bin, for x and y."""
    bins = np.arange(1000)
    boxes = dequantize(np.stack([bins, bins, bins, bins], 1), size)
    back = np.array([quantize_box(tuple(float(v) for v in b), size) for b in boxes])
    np.testing.assert_array_equal(back, np.stack([bins] * 4, 1))


def test_pixel_box_round_trip() -> None:
    """A pixel box survives box -> tokens -> box within one bin; outside boxes are clamped."""
    w, h = SIZE
    box = (100.3, 50.9, 400.0, 575.9)
    bins = quantize_box(box, SIZE)
    back = dequantize(np.array([bins]), SIZE)[0]
    assert np.all(np.abs(back - np.array(box)) <= np.array([w, h, w, h]) / 1000)
    assert region_tokens((-5.0, -1.0, 1e6, 1e6), SIZE) == "<loc_0><loc_0><loc_999><loc_999>"
    with pytest.raises(ValueError, match="not finite"):
        quantize_box((float("nan"), 0.0, 1.0, 1.0), SIZE)


@pytest.mark.parametrize("task", TASKS)
def test_processor_accepts_prompt(processor, task: str) -> None:  # noqa: ANN001
    """Each prompt expands to the task's sentence; region prompts carry the four loc tokens."""
    region = Region(box=(76.8, 115.2, 230.4, 230.4))
    prompt = build_prompt(task, CLASS_NAMES, region=region, image_size=SIZE)
    sentence = processor._construct_prompts(prompt)[0]  # noqa: SLF001 - the expansion itself
    assert not sentence.startswith("<") or task in REGION_TASKS
    if task in REGION_TASKS:
        assert prompt.endswith(BOX) and BOX in sentence
        ids = processor.tokenizer(sentence, add_special_tokens=False)["input_ids"]
        assert processor.tokenizer.convert_tokens_to_ids("<loc_100>") in ids


def test_region_is_the_least_confident_yolo_detection() -> None:
    """The fallback refines the box YOLO is least sure of; a frame without one has no region."""
    from agent.contracts.payloads import Detection
    from agent.fallback.prompts import job_prompt, pick_region
    from agent.types import Frame
    from tests.fallback.conftest import make_frame, make_yolo

    frame: Frame = make_frame(np.zeros((48, 64, 3), dtype=np.uint8))
    yolo = make_yolo(frame, seq=3)
    assert pick_region(yolo) is None
    dets = [
        Detection(label="person", class_id=0, confidence=0.9, box=(1, 2, 3, 4)),
        Detection(label="car", class_id=1, confidence=0.3, box=(5, 6, 7, 8)),
    ]
    region = pick_region(yolo.model_copy(update={"detections": dets}))
    assert region == Region(box=(5, 6, 7, 8), label="car", class_id=1)
    prompt, used = job_prompt(
        "<REGION_TO_SEGMENTATION>", CLASS_NAMES, yolo.model_copy(update={"detections": dets})
    )
    assert used == region and prompt == "<REGION_TO_SEGMENTATION>" + region_tokens(
        (5, 6, 7, 8), (64, 48)
    )
    assert job_prompt("<OD>", CLASS_NAMES, yolo) == ("<OD>", None)
    with pytest.raises(ValueError, match="needs a region box"):
        job_prompt("<REGION_TO_DESCRIPTION>", CLASS_NAMES, yolo)  # a frame without detections


def test_region_task_needs_a_box() -> None:
    """A region task without a box is refused before anything runs."""
    with pytest.raises(ValueError, match="needs a region box"):
        build_prompt("<REGION_TO_SEGMENTATION>", CLASS_NAMES)


def test_polygons_become_detections_with_their_bounds() -> None:
    """Segmentation answers give one detection per instance, its box bounding its polygons."""
    text = "</s><s>person<poly>" + POLY + "</poly></s>"
    r = parse_generation("<OPEN_VOCABULARY_DETECTION>", text, SIZE, CLASS_NAMES)
    assert r.labels == ("person",) and r.detections.class_id.tolist() == [0]
    np.testing.assert_allclose(r.detections.xyxy[0], [48.0, 6.048, 230.784, 230.688], atol=1e-3)
    assert len(r.polygons) == 1 and r.polygons[0][0].shape == (4, 2)
    region = Region(box=(0.0, 0.0, 10.0, 10.0), label="car", class_id=1)
    seg = parse_generation(
        "<REGION_TO_SEGMENTATION>", "</s><s>" + POLY + "</s>", SIZE, CLASS_NAMES, region=region
    )
    assert seg.labels == ("car",) and seg.detections.class_id.tolist() == [1]


def test_text_tasks_give_text() -> None:
    """OCR and the detailed captions are text answers with no detections."""
    for task in ("<OCR>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>"):
        r = parse_generation(task, "</s><s>STOP here</s>", SIZE, CLASS_NAMES)
        assert r.text == "STOP here" and len(r.detections) == 0


@pytest.mark.parametrize(
    ("task", "text"),
    [
        ("<REGION_PROPOSAL>", "</s><s><loc_1><loc_2></s>"),  # incomplete box
        ("<REFERRING_EXPRESSION_SEGMENTATION>", "</s><s><loc_1><loc_2></s>"),  # 2 locs only
        ("<OPEN_VOCABULARY_DETECTION>", "</s><s>words only</s>"),  # no location at all
    ],
)
def test_incomplete_answers_refused(task: str, text: str) -> None:
    """An answer without a complete group of its kind is a parse error with the raw text."""
    with pytest.raises(FlorenceParseError) as info:
        parse_generation(task, text, SIZE, CLASS_NAMES)
    assert info.value.text == text
