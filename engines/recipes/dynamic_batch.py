"""Make a dynamic-batch copy of a static-batch YOLO ONNX (Ultralytics export, batch 1).

    python engines/recipes/dynamic_batch.py engines/demo/model.onnx OUT.onnx [--manifest M]

The graph is the same; only the batch is freed: the input's and outputs' first dimension
become the symbolic `batch`, and every Reshape whose target shape starts with a literal 1
copies the batch from its input instead (0, with `allowzero` off). Shape annotations of
intermediate tensors are dropped (ONNX Runtime infers them again). Ultralytics' own
`export(dynamic=True)` gives the same interface when the model is re-trained
(`train_demo.py --dynamic`). With `--manifest M`, a manifest for OUT is written next to it
from M (same name, classes and input size, OUT's sha256 and length, format onnx).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

BATCH_DIM = "batch"


def free_batch(model: onnx.ModelProto) -> int:
    """Make `model`'s batch dimension dynamic in place; returns the Reshapes rewritten."""
    graph = model.graph
    for value in (*graph.input, *graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = BATCH_DIM
    inits = {i.name: i for i in graph.initializer}
    rewritten = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            raise ValueError(f"{node.name}: allowzero=1, the batch cannot be copied with 0")
        shape = inits.get(node.input[1])
        if shape is None:
            continue  # computed at run time: follows the input already
        target = numpy_helper.to_array(shape).copy()
        if target.size and target[0] == 1:
            target[0] = 0
            shape.CopyFrom(numpy_helper.from_array(target.astype(np.int64), shape.name))
            rewritten += 1
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return rewritten


def write_manifest(model_path: Path, base: Path, out: Path) -> None:
    """A manifest for `model_path`: `base`'s name, classes and input size, its own digest."""
    data = model_path.read_bytes()
    manifest = json.loads(base.read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), length=len(data), format="onnx")
    out.write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--manifest", type=Path, help="the source model's manifest")
    args = parser.parse_args()
    model = onnx.load(str(args.src))
    count = free_batch(model)
    onnx.save(model, str(args.dst))
    print(f"{args.dst}: batch axis '{BATCH_DIM}', {count} Reshape(s) rewritten")
    if args.manifest is not None:
        out = args.dst.with_name(args.dst.stem + ".manifest.json")
        write_manifest(args.dst, args.manifest, out)
        print(f"{out}: manifest")


if __name__ == "__main__":
    main()
