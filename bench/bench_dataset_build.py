"""Time of the review index and of `edge-gateway dataset build`, on real frames of the demo clip.

What runs, in this process (no server: the build is a local command): the demo clip's frames
(768x576, 10 fps) become intake items of D devices x C cameras, each camera's frames at their
real 0.1 s spacing, written as devices upload them (JPEG, YOLO labels, sidecar) under a fresh
data folder; `ReviewStore.index()` registers them (what `serve` does at start), all are
accepted, then `build_dataset` writes the dataset (with a base dataset of B images, and a gate
of G) twice: the first build, and a rebuild of the same folder.

Figures: items, index seconds, build seconds (first, rebuild), images per split, dropped by
reason, dataset size on disk.

    python bench/bench_dataset_build.py --devices 2 --cameras 2 [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.gateway.dataset_build import BuildOptions, build_dataset  # noqa: E402
from agent.gateway.db import Store  # noqa: E402
from agent.gateway.review import ReviewAction, ReviewFilter  # noqa: E402
from agent.gateway.review_store import ReviewStore  # noqa: E402
from tests.gateway.intake_items import T0, make_base, rfc3339  # noqa: E402

CLIP = REPO / "engines" / "demo" / "clip.mp4"
LABELS = "0 0.500000 0.500000 0.200000 0.400000\n"


def clip_jpegs(quality: int) -> list[bytes]:
    """Every frame of the demo clip as JPEG (each camera gets its own quality: other bytes)."""
    cap = cv2.VideoCapture(str(CLIP))
    out = []
    ok, frame = cap.read()
    while ok:
        out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
        ok, frame = cap.read()
    cap.release()
    return out


def write_intake(intake: Path, devices: int, cameras: int) -> int:
    n = 0
    for d in range(devices):
        for c in range(cameras):
            jpegs = clip_jpegs(92 - d * cameras - c)
            day = intake / f"jet-{d}" / f"cam-{c}" / "2027-01-15"
            day.mkdir(parents=True)
            for i, data in enumerate(jpegs):
                stem = f"f{i:06d}"
                meta = {"ts": rfc3339(T0 + i * 0.1), "class_names": ["person", "car"]}
                (day / f"{stem}.jpg").write_bytes(data)
                (day / f"{stem}.txt").write_text(LABELS)
                (day / f"{stem}.json").write_text(json.dumps(meta))
                n += 1
    return n


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--base", type=int, default=200, help="base dataset images (80% train)")
    ap.add_argument("--gate", type=int, default=50)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        items = write_intake(tmp / "intake", args.devices, args.cameras)
        base = make_base(tmp / "base", ["person", "car"], args.base * 4 // 5, args.base // 5)
        with Store(tmp / "gateway.sqlite3") as store:
            review = ReviewStore(store, tmp / "intake")
            t = time.perf_counter()
            review.index()
            index_s = time.perf_counter() - t
            review.act(ReviewAction.ACCEPT, ReviewFilter(all=True), "bench", None, time.time())
            rows = review.items(ReviewFilter())
        opts = BuildOptions("bench", tmp / "ds", base, 2.0, 0.2, 1.0, args.gate, "all")
        t = time.perf_counter()
        m = build_dataset(opts, rows, tmp / "intake", lambda *a: None)
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        build_dataset(
            BuildOptions(**{**opts.__dict__, "grow_gate": 0}), rows, tmp / "intake", lambda *a: None
        )
        rebuild_s = time.perf_counter() - t
        result = {
            "machine": f"{platform.machine()}, {platform.node()}",
            "intake_items": items,
            "base_images": args.base,
            "index_s": round(index_s, 2),
            "build_s": round(first_s, 2),
            "rebuild_s": round(rebuild_s, 2),
            "images": {k: v.images for k, v in m.splits.items()},
            "dropped": m.dropped,
            "dataset_mb": round(du(tmp / "ds") / 1e6, 1),
            "intake_mb": round(du(tmp / "intake") / 1e6, 1),
        }
    if args.markdown:
        print(
            "| intake items | base | index s | build s | rebuild s | train/val/gate | dropped | MB"
            " |"
        )
        print("|---|---|---|---|---|---|---|---|")
        im = result["images"]
        print(
            f"| {items} | {args.base} | {result['index_s']} | {result['build_s']} | "
            f"{result['rebuild_s']} | {im['train']}/{im['val']}/{im['gate']} | "
            f"{result['dropped']} | {result['dataset_mb']} |"
        )
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
