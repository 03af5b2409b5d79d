"""Real ONNX model variants for OTA tests, made from the demo YOLO by graph surgery.

Every variant loads in ONNX Runtime; they differ in what they output:

* `retagged`: the same network with another metadata tag (another sha256, same outputs);
* `resized_3class`: input 256x256 (resized to the original size inside the graph, boxes
  scaled back) and a third, never-scoring class - a new input size and class count;
* `boosted`: every class score at least 0.3 (many detections; a baseline with a high rate);
* `overconfident`: every class score + 1 (scores above 1);
* `silent`: every class score x 0 (never detects anything);
* `nan`: every output NaN (loads and runs, returns garbage);
* `crashing`: a Gather with an out-of-range index (loads, raises on the first frame).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.contracts.manifest import Manifest


def _load(src: Path) -> tuple[onnx.ModelProto, str, str, int, dict[str, str]]:
    model = onnx.load(str(src))
    out = model.graph.output[0].name
    inp = model.graph.input[0].name
    meta = {p.key: p.value for p in model.metadata_props}
    nc = len(ast.literal_eval(meta["names"]))
    return model, inp, out, nc, meta


def _rename_output(model: onnx.ModelProto, out: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == out:
                node.output[i] = new


def _set_meta(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))


def _const(name: str, arr: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))


def _post(src: Path, dst: Path, tag: str, build) -> Path:  # noqa: ANN001
    model, _inp, out, nc, meta = _load(src)
    _rename_output(model, out, "raw_out")
    nodes = build(nc)
    model.graph.node.extend(nodes)
    meta["ota_test_variant"] = tag
    _set_meta(model, meta)
    onnx.save(model, str(dst))
    return dst


def retagged(src: Path, dst: Path, tag: str = "v2") -> Path:
    """Same network, another metadata tag: another sha256."""
    model, _i, _o, _nc, meta = _load(src)
    meta["ota_test_variant"] = tag
    _set_meta(model, meta)
    onnx.save(model, str(dst))
    return dst


def boosted(src: Path, dst: Path) -> Path:
    """Every class score raised to at least 0.3 (Max): detections on every frame, scores <= 1."""

    def build(nc: int) -> list[onnx.NodeProto]:
        floor = np.array([-1e9] * 4 + [0.3] * nc, dtype=np.float32).reshape(1, 4 + nc, 1)
        return [_const("floor", floor), helper.make_node("Max", ["raw_out", "floor"], ["output0"])]

    return _post(src, dst, "boosted", build)


def overconfident(src: Path, dst: Path) -> Path:
    """Every class score + 1.0: scores above 1 (garbage a detector must not publish)."""

    def build(nc: int) -> list[onnx.NodeProto]:
        add = np.array([0.0] * 4 + [1.0] * nc, dtype=np.float32).reshape(1, 4 + nc, 1)
        return [_const("plus", add), helper.make_node("Add", ["raw_out", "plus"], ["output0"])]

    return _post(src, dst, "overconfident", build)


def silent(src: Path, dst: Path) -> Path:
    """Class scores x 0: no detections ever."""

    def build(nc: int) -> list[onnx.NodeProto]:
        mul = np.array([1.0] * 4 + [0.0] * nc, dtype=np.float32).reshape(1, 4 + nc, 1)
        return [_const("mute", mul), helper.make_node("Mul", ["raw_out", "mute"], ["output0"])]

    return _post(src, dst, "silent", build)


def nan(src: Path, dst: Path) -> Path:
    """Every output NaN."""

    def build(nc: int) -> list[onnx.NodeProto]:
        return [
            _const("nan", np.array([np.nan], dtype=np.float32)),
            helper.make_node("Mul", ["raw_out", "nan"], ["output0"]),
        ]

    return _post(src, dst, "nan", build)


def crashing(src: Path, dst: Path) -> Path:
    """Loads and survives a warm-up on a dark tensor; raises on any real (bright) frame.

    Gather on the batch axis (size 1) with index 1 when the input's max exceeds 0.5.
    """
    model, inp, out, _nc, meta = _load(src)
    _rename_output(model, out, "raw_out")
    model.graph.node.extend(
        [
            helper.make_node("ReduceMax", [inp], ["in_max"], keepdims=0),
            _const("half", np.array(0.5, dtype=np.float32)),
            helper.make_node("Greater", ["in_max", "half"], ["bright"]),
            helper.make_node("Cast", ["bright"], ["idx0"], to=TensorProto.INT64),
            _const("idx_shape", np.array([1], dtype=np.int64)),
            helper.make_node("Reshape", ["idx0", "idx_shape"], ["bad_idx"]),
            helper.make_node("Gather", ["raw_out", "bad_idx"], ["output0"], axis=0),
        ]
    )
    meta["ota_test_variant"] = "crashing"
    _set_meta(model, meta)
    onnx.save(model, str(dst))
    return dst


def resized_3class(src: Path, dst: Path, size: int = 256) -> Path:
    """Input `size`x`size` resized inside to the original, plus a third silent class."""
    model, inp, out, nc, meta = _load(src)
    orig = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    h0 = orig[2]
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == inp:
                node.input[i] = "images_resized"
    _rename_output(model, out, "raw_out")
    scale = size / h0
    box = np.array([scale] * 4 + [1.0] * nc, dtype=np.float32).reshape(1, 4 + nc, 1)
    nodes = [
        _const("sizes", np.array(orig, dtype=np.int64)),
        helper.make_node("Resize", [inp, "", "", "sizes"], ["images_resized"], mode="linear"),
        _const("box_scale", box),
        helper.make_node("Mul", ["raw_out", "box_scale"], ["scaled"]),
        _const("starts", np.array([4], dtype=np.int64)),
        _const("ends", np.array([5], dtype=np.int64)),
        _const("axes", np.array([1], dtype=np.int64)),
        helper.make_node("Slice", ["scaled", "starts", "ends", "axes"], ["one_class"]),
        _const("zero", np.array([0.0], dtype=np.float32)),
        helper.make_node("Mul", ["one_class", "zero"], ["extra_class"]),
        helper.make_node("Concat", ["scaled", "extra_class"], ["output0"], axis=1),
    ]
    model.graph.node.extend(nodes)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = size
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = size
    odims = model.graph.output[0].type.tensor_type.shape.dim
    odims[1].dim_value = 4 + nc + 1
    names = ast.literal_eval(meta["names"])
    names[len(names)] = "bicycle"
    meta["names"] = repr(names)
    meta["imgsz"] = f"[{size}, {size}]"
    meta["ota_test_variant"] = "resized_3class"
    _set_meta(model, meta)
    onnx.save(model, str(dst))
    return dst


def manifest_for(path: Path, base: Manifest, version: int, **changes: object) -> Manifest:
    """A manifest for `path` (its sha256 and length), else like `base`."""
    data = path.read_bytes()
    fields = base.model_dump(by_alias=False)
    fields.update(
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        length=len(data),
        created="2026-11-27T00:00:00Z",
        expires=None,
    )
    fields.update(changes)
    fields.pop("schema_", None)
    return Manifest(**fields)


def hungry(src: Path, dst: Path, gib: float = 4.0) -> Path:
    """Same outputs as `src`, but every inference first allocates a `gib` GiB tensor.

    ConstantOfShape of float32 zeros, reduced to a scalar and added as 0 to the output. The
    shape is computed from the input (max * 0 + n), so ONNX Runtime cannot fold it at load:
    the memory is taken at warm-up and on every frame.
    """
    model, inp, out, _nc, meta = _load(src)
    _rename_output(model, out, "raw_out")
    n = int(gib * (1 << 30) / 4)
    model.graph.node.extend(
        [
            helper.make_node("ReduceMax", [inp], ["h_max"], keepdims=0),
            _const("h_zero", np.array(0.0, dtype=np.float32)),
            helper.make_node("Mul", ["h_max", "h_zero"], ["h_nil"]),
            _const("h_n", np.array(float(n), dtype=np.float32)),
            helper.make_node("Add", ["h_nil", "h_n"], ["h_nf"]),
            helper.make_node("Cast", ["h_nf"], ["h_ni"], to=TensorProto.INT64),
            _const("h_shape1", np.array([1], dtype=np.int64)),
            helper.make_node("Reshape", ["h_ni", "h_shape1"], ["h_shape"]),
            helper.make_node("ConstantOfShape", ["h_shape"], ["h_big"]),
            helper.make_node("ReduceSum", ["h_big"], ["h_sum"], keepdims=0),
            helper.make_node("Mul", ["h_sum", "h_zero"], ["h_none"]),
            helper.make_node("Add", ["raw_out", "h_none"], ["output0"]),
        ]
    )
    meta["ota_test_variant"] = f"hungry-{gib:g}GiB"
    _set_meta(model, meta)
    onnx.save(model, str(dst))
    return dst
