"""Tiny real ONNX graphs built with onnx.helper, for engine and detector tests.

Each graph takes an NCHW float image and returns a fixed literal tensor (plus 0 x the
input's mean, so the input is really consumed). That lets a test choose exactly what a
"network" outputs: any YOLO layout, a classifier's [1, 1000], or a bad shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.engines.yolo import LetterboxInfo

# A 128x96 (w x h) frame letterboxed into 64x64: scale 0.5, 8 rows of padding on top.
FRAME_HW = (96, 128)
INFO = LetterboxInfo(scale=0.5, pad_x=0.0, pad_y=8.0)
# What the three literal outputs below must decode to (original-frame pixels).
EXPECTED_XYXY = np.array([[30, 14, 50, 34], [32, 14, 52, 34]], dtype=np.float32)
EXPECTED_CONF = np.array([0.9, 0.7], dtype=np.float32)
EXPECTED_CLASS = np.array([0, 1], dtype=np.int64)

# V8 [1, 4+nc, N]: columns are anchors. nc=2.
V8_OUT = np.array(
    [
        [
            # a0 best, a1 overlaps a0 (same class: suppressed), a2 same place other class, a3 weak
            [20, 21, 21, 40],  # cx
            [20, 20, 20, 40],  # cy
            [10, 10, 10, 8],  # w
            [10, 10, 10, 8],  # h
            [0.9, 0.8, 0.0, 0.2],  # class 0 score
            [0.1, 0.0, 0.7, 0.1],  # class 1 score
        ]
    ],
    dtype=np.float32,
)
# V5 [1, N, 5+nc]: rows are anchors; confidence = objectness x class score.
V5_OUT = np.array(
    [
        [
            [20, 20, 10, 10, 1.0, 0.9, 0.1],  # 0.9 class 0
            [21, 20, 10, 10, 0.9, 0.9, 0.0],  # 0.81 class 0, overlaps: suppressed
            [21, 20, 10, 10, 0.8, 0.1, 0.875],  # 0.7 class 1
            [40, 40, 8, 8, 0.2, 1.0, 0.0],  # objectness below threshold
        ]
    ],
    dtype=np.float32,
)
# END2END [1, K, 6]: x1, y1, x2, y2, score, class; no NMS is applied.
E2E_OUT = np.array(
    [
        [
            [16, 15, 26, 25, 0.7, 1],
            [15, 15, 25, 25, 0.9, 0],
            [30, 30, 40, 40, 0.1, 0],  # below threshold
        ]
    ],
    dtype=np.float32,
)


def constant_output_model(
    path: Path,
    output: npt.NDArray[np.float32],
    *,
    input_shape: Sequence[int | str] = (1, 3, 64, 64),
    metadata: Mapping[str, str] | None = None,
    input_type: int = TensorProto.FLOAT,
    extra_inputs: int = 0,
) -> Path:
    """Write an ONNX model whose single output is always `output`.

    Args:
        path: where to write the .onnx file.
        output: the literal output tensor (its shape is the output shape).
        input_shape: the image input's shape; strings make dynamic dims.
        metadata: model metadata_props (Ultralytics keys: names, imgsz, task, end2end).
        input_type: ONNX element type of the input (FLOAT for a detector).
        extra_inputs: additional unused float inputs (for "not a detector" cases).
    """
    value = np.asarray(output, dtype=np.float32)
    inputs = [helper.make_tensor_value_info("images", input_type, list(input_shape))]
    inputs += [
        helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT, [1, 4])
        for i in range(extra_inputs)
    ]
    nodes = []
    image = "images"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["images"], ["images_f"], to=TensorProto.FLOAT))
        image = "images_f"
    rank = len(input_shape)
    nodes += [
        helper.make_node("ReduceMean", [image], ["mean"], axes=list(range(rank)), keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0.0))),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Constant", [], ["literal"], value=numpy_helper.from_array(value)),
        helper.make_node("Add", ["literal", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic",
        inputs,
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(value.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, val in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, val
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def ultralytics_metadata(
    names: Sequence[str],
    imgsz: tuple[int, int] = (64, 64),
    *,
    end2end: bool = False,
    task: str = "detect",
) -> dict[str, str]:
    """Metadata as Ultralytics writes it (names is a python dict literal)."""
    return {
        "names": repr(dict(enumerate(names))),
        "imgsz": repr(list(imgsz)),
        "task": task,
        "end2end": str(end2end),
        "stride": "32",
    }
