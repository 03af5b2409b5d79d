"""Fine-tuning targets: an image's labelled boxes -> the prompt and answer Florence-2 learns.

Florence-2 is trained on (prompt, answer) text pairs; for boxes the answer writes each object
as its label followed by four location tokens (`car<loc_x1><loc_y1><loc_x2><loc_y2>`, bins of
1/1000 of the width/height, as transformers' `quantize`). Two target kinds:

    <OD>                            answer  'car<loc..>x4 person<loc..>x4 ...' (one per box)
    <CAPTION_TO_PHRASE_GROUNDING>   prompt  '<CAPTION_TO_PHRASE_GROUNDING>car. person'
                                    answer  'car<loc..>x4<loc..>x4 person<loc..>x4' (phrase, boxes)

Boxes are written in reading order (top to bottom, then left to right) so the target of an
image does not depend on the label file's line order. Pure: no files, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.fallback.prompts import build_prompt, region_tokens

TARGET_TASKS = ("<OD>", "<CAPTION_TO_PHRASE_GROUNDING>")


@dataclass(frozen=True)
class LabelledObject:
    """One labelled object of a training image.

    Attributes:
        label: class name (what Florence-2 should write).
        box: (x1, y1, x2, y2) in pixels.
    """

    label: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Target:
    """One training pair: the processor prompt and the answer text (no special tokens)."""

    prompt: str
    answer: str


def _reading_order(objects: Sequence[LabelledObject]) -> list[LabelledObject]:
    return sorted(objects, key=lambda o: (o.box[1], o.box[0], o.label, o.box[2], o.box[3]))


def od_target(objects: Sequence[LabelledObject], size: tuple[int, int]) -> Target:
    """The `<OD>` pair: each object as `label<loc><loc><loc><loc>`, in reading order."""
    answer = "".join(o.label + region_tokens(o.box, size) for o in _reading_order(objects))
    return Target(prompt="<OD>", answer=answer)


def grounding_target(objects: Sequence[LabelledObject], size: tuple[int, int]) -> Target | None:
    """The grounding pair: the image's labels as the phrase, each followed by its boxes.

    None when the image has no object (grounding needs a phrase).
    """
    if not objects:
        return None
    ordered = _reading_order(objects)
    labels = list(dict.fromkeys(o.label for o in ordered))
    answer = "".join(
        lb + "".join(region_tokens(o.box, size) for o in ordered if o.label == lb) for lb in labels
    )
    prompt = build_prompt("<CAPTION_TO_PHRASE_GROUNDING>", tuple(labels))
    return Target(prompt=prompt, answer=answer)


def targets_for(
    objects: Sequence[LabelledObject], size: tuple[int, int], tasks: Sequence[str]
) -> list[Target]:
    """The training pairs of one image for `tasks` (a subset of TARGET_TASKS).

    Raises:
        ValueError: a task that is not a fine-tuning target.
    """
    out: list[Target] = []
    for task in tasks:
        if task == "<OD>":
            out.append(od_target(objects, size))
        elif task == "<CAPTION_TO_PHRASE_GROUNDING>":
            t = grounding_target(objects, size)
            if t is not None:
                out.append(t)
        else:
            raise ValueError(f"cannot fine-tune on {task}; targets: {', '.join(TARGET_TASKS)}")
    return out
