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
        helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT, [1, 4]) for i in range(extra_inputs)
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
    names: Sequence[str], imgsz: tuple[int, int] = (64, 64), *, end2end: bool = False,
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
