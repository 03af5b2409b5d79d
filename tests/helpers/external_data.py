"""ONNX models whose tensors point at external data: the path-escape attack on model loaders."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

YOLO_META = {"names": "{0: 'person', 1: 'car'}", "imgsz": "[32, 32]", "task": "detect"}


def external_tensor(name: str, location: str, length: int = 240) -> onnx.TensorProto:
    """A float tensor [1, 6, 10] whose bytes ONNX says live in the file `location`."""
    t = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[1, 6, 10])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def external_data_model(path: Path, location: str = "../../etc/passwd") -> Path:
    """A YOLO-shaped model ([1,3,32,32] -> [1,6,10], 2 classes) whose only initializer reads
    its bytes from `location` (by default outside the model directory)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["weights"], ["output0"])],
        "escape",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 10])],
        initializer=[external_tensor("weights", location)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in YOLO_META.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def external_data_in_subgraph(path: Path, location: str = "/etc/shadow") -> Path:
    """A model whose external tensor hides in an If node's branch (a subgraph), not the main
    graph's initializers."""
    branch = helper.make_graph(
        [helper.make_node("Identity", ["hidden"], ["out_b"])],
        "branch",
        [],
        [helper.make_tensor_value_info("out_b", TensorProto.FLOAT, [1, 6, 10])],
        initializer=[external_tensor("hidden", location)],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["output0"], then_branch=branch, else_branch=branch)],
        "hidden-escape",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
