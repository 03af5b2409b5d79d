"""Train, export and describe the demo YOLO from a dataset made by `edge-agent label`.

Stages (each skipped when its output exists, so an interrupted recipe continues):
  train   yolov8n from its yaml (no pretrained weights), CPU -> RUNS/<name>/weights/best.pt
  finetune  optional second phase from that best.pt (--finetune-epochs N, default 0: off;
          tried with 12 epochs + mosaic and with 10 epochs AdamW lr0 5e-4 without mosaic:
          neither beat the first phase on held-out mAP50 or person confidence)
  export  best.pt -> ONNX (opset default, static, no NMS) -> OUT/model.onnx + manifest.json
  eval    mAP50 of the exported ONNX against the teacher's labels of the val split

Needs the `train` extra (`pip install -e .[train]`) and CPU torch
(`pip install torch==2.14.1 torchvision==0.29.1`).
Usage: python engines/recipes/train_demo.py --data DATASET/data.yaml --runs /tmp/edge-demo-runs
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def train(
    data: Path, runs: Path, name: str, epochs: int, imgsz: int, batch: int, workers: int, nbs: int
) -> Path:
    """Train yolov8n from scratch; return the path of best.pt."""
    best = runs / name / "weights" / "best.pt"
    if best.exists():
        print(f"train: {best} exists, skipping", flush=True)
        return best
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    t0 = time.monotonic()
    model.train(
        data=str(data),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        workers=workers,
        device="cpu",
        project=str(runs),
        name=name,
        exist_ok=True,
        pretrained=False,
        amp=False,
        plots=False,
        seed=0,
        deterministic=True,
        nbs=nbs,
        verbose=True,
    )
    minutes = (time.monotonic() - t0) / 60
    (runs / name / "train_minutes.txt").write_text(f"{minutes:.1f}\n")
    print(f"train: {epochs} epochs in {minutes:.1f} min", flush=True)
    return best


def finetune(
    best: Path,
    data: Path,
    runs: Path,
    name: str,
    epochs: int,
    imgsz: int,
    batch: int,
    workers: int,
    close_mosaic: int,
    lr0: float,
) -> Path:
    """Second phase: continue from `best` with a fresh schedule; return the new best.pt."""
    new_best = runs / name / "weights" / "best.pt"
    if new_best.exists():
        print(f"finetune: {new_best} exists, skipping", flush=True)
        return new_best
    from ultralytics import YOLO

    t0 = time.monotonic()
    YOLO(str(best)).train(
        data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, workers=workers, device="cpu",
        project=str(runs), name=name, exist_ok=True, amp=False, plots=False, seed=0,
        deterministic=True, close_mosaic=close_mosaic, warmup_epochs=0, optimizer="AdamW",
        lr0=lr0, verbose=True,
    )  # fmt: skip
    minutes = (time.monotonic() - t0) / 60
    (runs / name / "train_minutes.txt").write_text(f"{minutes:.1f}\n")
    print(f"finetune: {epochs} epochs in {minutes:.1f} min", flush=True)
    return new_best


def export(best: Path, out: Path, imgsz: int, name: str, version: int) -> Path:
    """Export best.pt to OUT/model.onnx and write OUT/manifest.json."""
    from ultralytics import YOLO

    from agent.contracts.manifest import Manifest

    onnx_path = Path(YOLO(str(best)).export(format="onnx", imgsz=imgsz))
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.onnx"
    shutil.copyfile(onnx_path, target)
    data = target.read_bytes()
    names = YOLO(str(best)).names
    manifest = Manifest(
        name=name,
        version=version,
        format="onnx",
        sha256=hashlib.sha256(data).hexdigest(),
        length=len(data),
        input_size=(imgsz, imgsz),
        class_names=[names[i] for i in sorted(names)],
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    (out / "manifest.json").write_text(
        json.dumps(manifest.model_dump(mode="json", by_alias=True), indent=2) + "\n"
    )
    print(f"export: {target} ({len(data)} bytes), manifest written", flush=True)
    return target


def evaluate(model_path: Path, data: Path, imgsz: int, runs: Path) -> dict[str, float]:
    """mAP50 (all and per class) of `model_path` on the dataset's val split."""
    from ultralytics import YOLO

    metrics = YOLO(str(model_path), task="detect").val(
        data=str(data),
        imgsz=imgsz,
        batch=1,
        device="cpu",
        split="val",
        plots=False,
        project=str(runs),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    names = metrics.names
    result = {"all": float(metrics.box.map50)}
    for i, class_index in enumerate(metrics.box.ap_class_index):
        result[names[int(class_index)]] = float(metrics.box.ap50[i])
    print("eval: mAP50 " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data.yaml from edge-agent label")
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path("/tmp/edge-demo-runs"),
        help="Ultralytics run folder (keep outside the repo)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "engines" / "demo")
    parser.add_argument("--run-name", default="demo")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--nbs", type=int, default=64, help="nominal batch size (Ultralytics)")
    parser.add_argument("--model-name", default="demo-yolov8n")
    parser.add_argument("--model-version", type=int, default=1)
    parser.add_argument(
        "--finetune-epochs", type=int, default=0, help="0: no second phase (the committed model)"
    )
    parser.add_argument("--finetune-suffix", default="-ft")
    parser.add_argument("--finetune-close-mosaic", type=int, default=6)
    parser.add_argument("--finetune-lr0", type=float, default=0.0005)
    parser.add_argument("--stages", default="train,finetune,export,eval")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    best = args.runs / args.run_name / "weights" / "best.pt"
    if "train" in stages:
        best = train(
            args.data,
            args.runs,
            args.run_name,
            args.epochs,
            args.imgsz,
            args.batch,
            args.workers,
            args.nbs,
        )
    if "finetune" in stages and args.finetune_epochs:
        best = finetune(
            best, args.data, args.runs, args.run_name + args.finetune_suffix,
            args.finetune_epochs, args.imgsz, args.batch, args.workers,
            args.finetune_close_mosaic, args.finetune_lr0,
        )  # fmt: skip
    elif args.finetune_epochs:
        best = args.runs / (args.run_name + args.finetune_suffix) / "weights" / "best.pt"
    onnx_path = args.out / "model.onnx"
    if "export" in stages:
        onnx_path = export(best, args.out, args.imgsz, args.model_name, args.model_version)
    if "eval" in stages:
        result = evaluate(onnx_path, args.data, args.imgsz, args.runs)
        (args.runs / args.run_name / "eval.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
