"""Rebuild the demo model's Ultralytics checkpoint (`model.pt`) from its own `model.onnx`.

The demo model was trained by `train_demo.py`, but only its ONNX export was kept. Ultralytics'
exporter fused every BatchNorm into the preceding convolution, so the ONNX initializers are
the fused weights: `W_f = W * g / sqrt(v + eps)`, `b_f = beta - m * g / sqrt(v + eps)`.
This recipe builds the same graph (`yolov8n.yaml`, nc=2), puts the fused weights back into
an *unfused* model and re-derives BatchNorm parameters that make it train like the original:

1. every Conv+BN is loaded with `conv.weight = W_f` and an identity BN carrying `b_f`, so in
   eval mode the model computes exactly what the ONNX computes;
2. the per-channel mean `m'` and variance `v'` of every convolution's output are measured on
   frames of the demo clip (letterboxed like the daemon does);
3. BN becomes `running_mean = m'`, `running_var = v'`, `weight = sqrt(v' + eps)`,
   `bias = b_f + m'`: eval output is unchanged (the weight cancels the normalisation), and
   in train mode (batch statistics ~ m', v') the layer behaves as in eval mode, so a
   fine-tune does not start by scrambling the network. Up to the scale of the conv weights
   this recovers the original BN parameters (`sqrt(v') = g`, `b_f + m' = beta`).

Then it saves an Ultralytics checkpoint (fp32) and verifies it: the checkpoint's own ONNX
re-export (Ultralytics, imgsz 320) against the committed `model.onnx` on clip frames, raw
outputs, max abs diff.

Needs the `train` extra (Ultralytics, AGPL-3.0; see engines/demo/README.md).
Usage: python engines/recipes/pt_from_onnx.py [--onnx engines/demo/model.onnx] [--out ...pt]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def clip_tensors(clip: Path, imgsz: int, every: int) -> list[np.ndarray]:
    """Every `every`-th frame of the clip, letterboxed as the daemon does: (1,3,H,W) float32."""
    from agent.engines.yolo import letterbox

    cap = cv2.VideoCapture(str(clip))
    frames = []
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % every == 0:
            tensor, _ = letterbox(frame, (imgsz, imgsz))
            frames.append(tensor.copy())
        index += 1
    cap.release()
    if not frames:
        raise SystemExit(f"no frames read from {clip}")
    return frames


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    return {
        init.name: numpy_helper.to_array(init)
        for init in onnx.load(str(path)).graph.initializer
        if init.name.startswith("model.")
    }


def build_model(names: dict[int, str]):
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
    model.names = names
    return model.float().eval()


def conv_bn_modules(model) -> dict[str, torch.nn.Module]:
    from ultralytics.nn.modules.conv import Conv

    return {name: m for name, m in model.named_modules() if isinstance(m, Conv)}


def load_fused(model, weights: dict[str, np.ndarray]) -> None:
    """Fused weights into the unfused model, BN set to identity plus the fused bias."""
    convs = conv_bn_modules(model)
    used: set[str] = set()
    with torch.no_grad():
        for name, m in convs.items():
            w, b = weights[f"{name}.conv.weight"], weights[f"{name}.conv.bias"]
            m.conv.weight.copy_(torch.from_numpy(w.copy()))
            m.bn.weight.fill_(1.0)
            m.bn.bias.copy_(torch.from_numpy(b.copy()))
            m.bn.running_mean.zero_()
            m.bn.running_var.fill_(1.0 - m.bn.eps)  # sqrt(var + eps) == 1
            used.update({f"{name}.conv.weight", f"{name}.conv.bias"})
        state = model.state_dict()
        for key, value in weights.items():  # plain convs of the head and the fixed DFL conv
            if key in used:
                continue
            if key not in state or tuple(state[key].shape) != value.shape:
                raise SystemExit(f"ONNX weight {key} {value.shape} has no place in the model")
            state[key].copy_(torch.from_numpy(value.copy()))
            used.add(key)
    missing = set(weights) - used
    if missing:
        raise SystemExit(f"ONNX weights not used: {sorted(missing)[:5]}")
    print(f"loaded {len(used)} ONNX tensors into {len(convs)} Conv+BN blocks and the head")


def calibrate_bn(model, tensors: list[np.ndarray]) -> None:
    """Measure conv output statistics and turn them into equivalent BN parameters."""
    convs = conv_bn_modules(model)
    sums: dict[str, list[torch.Tensor]] = {n: [] for n in convs}

    def hook(name):
        def fn(_module, _inputs, output):
            y = output.detach().double()
            sums[name].append(torch.stack([y.mean((0, 2, 3)), (y * y).mean((0, 2, 3))]))

        return fn

    handles = [m.conv.register_forward_hook(hook(n)) for n, m in convs.items()]
    with torch.no_grad():
        for t in tensors:
            model(torch.from_numpy(t))
    for h in handles:
        h.remove()
    with torch.no_grad():
        for name, m in convs.items():
            stats = torch.stack(sums[name]).mean(0)
            mean, var = stats[0], (stats[1] - stats[0] ** 2).clamp_min(1e-6)
            m.bn.running_mean.copy_(mean.float())
            m.bn.running_var.copy_(var.float())
            m.bn.weight.copy_(torch.sqrt(var + m.bn.eps).float())
            m.bn.bias.add_(mean.float())
    print(f"BN re-derived from {len(tensors)} clip frames")


def save_checkpoint(model, out: Path, imgsz: int, source: Path) -> None:
    import ultralytics

    ckpt = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": ultralytics.__version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "best_fitness": None,
        "model": model,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"task": "detect", "model": "yolov8n.yaml", "imgsz": imgsz, "data": None},
        "train_metrics": {},
        "edge_agent": {"rebuilt_from": source.name, "recipe": "engines/recipes/pt_from_onnx.py"},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    print(f"saved {out} ({out.stat().st_size} bytes)")


def run_onnx(path: Path, tensors: list[np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: t})[0] for t in tensors])


def verify(pt: Path, reference: Path, tensors: list[np.ndarray], imgsz: int) -> float:
    """Max abs diff between the checkpoint's ONNX re-export and the reference ONNX."""
    import shutil

    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / pt.name
        shutil.copyfile(pt, copy)
        exported = Path(YOLO(str(copy)).export(format="onnx", imgsz=imgsz, verbose=False))
        got, want = run_onnx(exported, tensors), run_onnx(reference, tensors)
    diff = float(np.abs(got - want).max())
    scores = want[:, 4:, :]
    print(
        f"verify: {len(tensors)} clip frames, output {list(want.shape)}, max abs diff {diff:.3g} "
        f"(boxes in pixels up to {want[:, :4].max():.0f}; max score diff "
        f"{float(np.abs(got[:, 4:] - scores).max()):.3g})"
    )
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", type=Path, default=REPO / "engines/demo/model.onnx")
    parser.add_argument("--out", type=Path, default=REPO / "engines/demo/model.pt")
    parser.add_argument("--clip", type=Path, default=REPO / "engines/demo/clip.mp4")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--calib-every", type=int, default=2, help="every Nth clip frame")
    parser.add_argument("--verify-every", type=int, default=5)
    parser.add_argument("--max-diff", type=float, default=1e-2)
    args = parser.parse_args()
    names = dict(enumerate(["person", "car"]))
    model = build_model(names)
    load_fused(model, onnx_weights(args.onnx))
    calibrate_bn(model, clip_tensors(args.clip, args.imgsz, args.calib_every))
    save_checkpoint(model, args.out, args.imgsz, args.onnx)
    tensors = clip_tensors(args.clip, args.imgsz, args.verify_every)
    diff = verify(args.out, args.onnx, tensors, args.imgsz)
    if diff > args.max_diff:
        raise SystemExit(f"re-export differs from {args.onnx} by {diff} > {args.max_diff}")


if __name__ == "__main__":
    main()
