"""Small real ONNX models built with onnx.helper for fault cases the demo model cannot show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, str] | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


YOLO_META = {"names": "{0: 'person', 1: 'car'}", "imgsz": "[320, 320]", "task": "detect"}


def slow_yolo(path: Path, matmuls: int = 40, size: int = 1000) -> Path:
    """A YOLOv8-shaped model ([1,3,320,320] -> [1,6,2100], never any box) that is slow.

    Each of `matmuls` (size x size) products costs 2*size^3 FLOPs, all depending on the input
    so nothing is constant-folded: seconds per inference on a small CPU.
    """
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((size, size)) / size).astype(np.float32), "W")
    ones = numpy_helper.from_array(np.ones((size, size), np.float32), "ONES")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "ZERO")
    starts = numpy_helper.from_array(np.array([0, 0], np.int64), "S0")
    ends = numpy_helper.from_array(np.array([6, 2100], np.int64), "S1")
    axes0 = numpy_helper.from_array(np.array([0], np.int64), "AX0")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["ONES", "m"], ["a0"]),
    ]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"a{i}", "W"], [f"a{i + 1}"]))
    tail = f"a{matmuls}"
    nodes += [
        helper.make_node("Tile", [tail, "REP"], ["tiled"]),
        helper.make_node("Slice", ["tiled", "S0", "S1"], ["sl"]),
        helper.make_node("Mul", ["sl", "ZERO"], ["z"]),
        helper.make_node("Unsqueeze", ["z", "AX0"], ["output0"]),
    ]
    rep = numpy_helper.from_array(np.array([1, 3], np.int64), "REP")
    graph = helper.make_graph(
        nodes,
        "slow_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 2100])],
        initializer=[w, ones, zero, starts, ends, axes0, rep],
    )
    return _save(graph, path, YOLO_META)


def slow_yolo_taking(path: Path, seconds: float) -> Path:
    """A `slow_yolo` whose one inference takes about `seconds` on one thread of this machine.

    A fixed number of products is seconds on a small CPU but well under one on a fast one
    (AVX-512), so the size is measured here: a short probe is timed, the products scaled.
    """
    import time

    import onnxruntime as ort

    probe = slow_yolo(path.with_name(path.stem + "-probe.onnx"), matmuls=10)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(probe), opts, providers=["CPUExecutionProvider"])
    feed = {"images": np.zeros((1, 3, 320, 320), np.float32)}
    session.run(None, feed)  # warm-up
    start = time.perf_counter()
    session.run(None, feed)
    per_matmul = (time.perf_counter() - start) / 10
    return slow_yolo(path, matmuls=max(10, int(seconds / per_matmul) + 1))


def classifier(path: Path) -> Path:
    """An image classifier ([1,3,224,224] -> [1,1000]): loads fine, but is not a detector."""
    pool = helper.make_node("GlobalAveragePool", ["images"], ["p"])
    flat = helper.make_node("Flatten", ["p"], ["f"])
    w = numpy_helper.from_array(np.ones((3, 1000), np.float32), "W")
    mm = helper.make_node("MatMul", ["f", "W"], ["logits"])
    graph = helper.make_graph(
        [pool, flat, mm],
        "classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        initializer=[w],
    )
    return _save(graph, path)


def failing_yolo(path: Path) -> Path:
    """A YOLOv8-shaped model that loads but raises in ONNX Runtime on every inference.

    It gathers element 10^9 of a 10-element tensor, an index computed from the input, so the
    error only shows at run time ("indices element out of data bounds").
    """
    inits = [
        numpy_helper.from_array(np.zeros((10,), np.float32), "DATA"),
        numpy_helper.from_array(np.zeros((1,), np.float32), "ZERO"),
        numpy_helper.from_array(np.full((1,), 1e9, np.float32), "BIG"),
        numpy_helper.from_array(np.zeros((1, 6, 2100), np.float32), "BASE"),
    ]
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "ZERO"], ["m0"]),
        helper.make_node("Add", ["m0", "BIG"], ["bigf"]),
        helper.make_node("Cast", ["bigf"], ["idx"], to=TensorProto.INT64),
        helper.make_node("Gather", ["DATA", "idx"], ["g"]),
        helper.make_node("Add", ["BASE", "g"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "failing_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 2100])],
        initializer=inits,
    )
    return _save(graph, path, YOLO_META)
