"""Cheaper pre-processing? Three ways to turn a BGR frame into the network's input, measured
side by side by `bench_pipeline.py --pre-variants` (issue 17):

  ours       `Letterboxer`: resize into a reused buffer, split into planes, one uint8 ->
             float32 scaling pass per plane into the NCHW tensor (today's path)
  blob       resize into a padded uint8 canvas, then `cv2.dnn.blobFromImage(scale 1/255,
             swapRB)`: OpenCV's fused cast + scale + transpose + channel swap
  uint8      resize into a padded uint8 NHWC canvas and nothing else; the model takes that
             tensor: a graph edit (`uint8_input_model`) puts Transpose + Cast in front of
             the first Conv and folds the BGR -> RGB swap and the 1/255 scale into that
             Conv's weights (exact but for float rounding)

The uint8 path moves work into the engine, so its cost counts: the in-graph part is timed
as the difference of `session.run` between the edited and the original model (interleaved,
thread CPU time), and as a graph holding only the added Transpose + Cast.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from agent.engines.yolo import PAD_VALUE, Letterboxer, letterbox_geometry

U8_INPUT = "images_u8"


def uint8_input_model(src: Path, dst: Path) -> Path:
    """Write `src` with a (1, H, W, 3) uint8 BGR input; see the module docstring."""
    model = onnx.load(str(src))
    graph = model.graph
    old = graph.input[0]
    dims = [d.dim_value for d in old.type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims) <= 0:
        raise ValueError(f"needs a static (1, 3, H, W) input, got {dims}")
    first = next(n for n in graph.node if old.name in n.input)
    if first.op_type != "Conv" or list(first.input).count(old.name) != 1:
        raise ValueError(f"the input must feed one Conv, it feeds {first.op_type}")
    weights = next(i for i in graph.initializer if i.name == first.input[1])
    w = numpy_helper.to_array(weights)[:, ::-1, :, :] / np.float32(255.0)
    weights.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w, np.float32), weights.name))
    nodes = [
        helper.make_node("Transpose", [U8_INPUT], ["_nchw_u8"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["_nchw_u8"], [old.name], to=TensorProto.FLOAT),
    ]
    shape = [dims[0], dims[2], dims[3], dims[1]]
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(U8_INPUT, TensorProto.UINT8, shape))
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


class Canvas:
    """A padded uint8 canvas the frame is resized into (the padding painted once)."""

    def __init__(self, frame_hw: tuple[int, int], size: tuple[int, int], nhwc: bool) -> None:
        info, (self.h, self.w) = letterbox_geometry(frame_hw, size)
        shape = (1, *size, 3) if nhwc else (*size, 3)
        self.buf = np.full(shape, PAD_VALUE, np.uint8)
        top, left = int(info.pad_y), int(info.pad_x)
        plane = self.buf[0] if nhwc else self.buf
        self.roi = plane[top : top + self.h, left : left + self.w]

    def fill(self, frame: np.ndarray) -> np.ndarray:
        cv2.resize(frame, (self.w, self.h), dst=self.roi, interpolation=cv2.INTER_LINEAR)
        return self.buf


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _added_ops_session(shape: list[int]) -> ort.InferenceSession:
    """Only the Transpose + Cast the uint8 model adds, as its own graph."""
    out = [shape[0], shape[3], shape[1], shape[2]]
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["t"], ["y"], to=TensorProto.FLOAT),
        ],
        "added",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _cpu_ms(fn: Callable[[int], object], n: int) -> float:
    start = time.thread_time()
    for i in range(n):
        fn(i)
    return (time.thread_time() - start) * 1000.0 / n


def measure(
    model: Path, frames: list[np.ndarray], threads: int, rounds: int, work: Path
) -> list[tuple[str, str, str]]:
    """Rows for bench_pipeline's table: each variant's pre (thread CPU ms, median of rounds),
    the uint8 model's in-graph cost, and whether its outputs match."""
    work.mkdir(parents=True, exist_ok=True)
    u8_path = uint8_input_model(model, work / "model_u8.onnx")
    s_float, s_u8 = _session(model, threads), _session(u8_path, threads)
    name = s_float.get_inputs()[0].name
    size = tuple(s_float.get_inputs()[0].shape[2:])
    lb = Letterboxer(size)  # type: ignore[arg-type]
    blob_canvas = Canvas(frames[0].shape[:2], size, nhwc=False)  # type: ignore[arg-type]
    u8_canvas = Canvas(frames[0].shape[:2], size, nhwc=True)  # type: ignore[arg-type]
    added = _added_ops_session(list(u8_canvas.buf.shape))
    n = len(frames)

    def blob(i: int) -> np.ndarray:
        return cv2.dnn.blobFromImage(blob_canvas.fill(frames[i % n]), 1 / 255.0, swapRB=True)

    ref = s_float.run(None, {name: lb(frames[0])[0]})[0]
    diff_u8 = float(np.abs(s_u8.run(None, {U8_INPUT: u8_canvas.fill(frames[0])})[0] - ref).max())
    diff_blob = float(np.abs(s_float.run(None, {name: blob(0)})[0] - ref).max())
    x, u = lb(frames[1])[0].copy(), u8_canvas.fill(frames[1]).copy()
    r: dict[str, list[float]] = {k: [] for k in ("ours", "blob", "u8", "float", "u8run", "ops")}
    for _ in range(rounds):
        r["ours"].append(_cpu_ms(lambda i: lb(frames[i % n]), 300))
        r["blob"].append(_cpu_ms(blob, 300))
        r["u8"].append(_cpu_ms(lambda i: u8_canvas.fill(frames[i % n]), 300))
        r["float"].append(_cpu_ms(lambda i: s_float.run(None, {name: x}), 30))
        r["u8run"].append(_cpu_ms(lambda i: s_u8.run(None, {U8_INPUT: u}), 30))
        r["ops"].append(_cpu_ms(lambda i: added.run(None, {"x": u}), 300))
    m = {k: statistics.median(v) for k, v in r.items()}
    in_graph = m["u8run"] - m["float"]
    return [
        ("pre: ours (Letterboxer), thread CPU ms", f"{m['ours']:.3f}", "today's path"),
        (
            "pre: resize + cv2.dnn.blobFromImage, thread CPU ms",
            f"{m['blob']:.3f}",
            f"{m['blob'] / m['ours']:.2f} x ours; outputs within {diff_blob:.1e}",
        ),
        (
            "pre: resize into a uint8 NHWC canvas, thread CPU ms",
            f"{m['u8']:.3f}",
            f"{m['u8'] / m['ours']:.2f} x ours, plus the in-graph part below",
        ),
        (
            "uint8 model: its added Transpose + Cast alone (1 thread), CPU ms",
            f"{m['ops']:.3f}",
            f"uint8 pre + this = {m['u8'] + m['ops']:.3f} ms vs ours {m['ours']:.3f} ms",
        ),
        (
            "uint8 model: session.run - original session.run, thread CPU ms",
            f"{in_graph:+.2f}",
            f"{m['float']:.2f} ms original (noise of the same order); outputs within {diff_u8:.1e}",
        ),
    ]
