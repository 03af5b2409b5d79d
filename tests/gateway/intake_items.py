"""Real intake items for the review and dataset tests: JPEGs made with Pillow, uploaded through
the intake HTTP path as devices do, and a small base Ultralytics dataset on disk."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import yaml
from PIL import Image

from tests.gateway.sim_device import device_token

T0 = 1_800_000_000.0  # 2027-01-15 UTC


def jpeg(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    """A JPEG of random 8x8-pixel blocks: two seeds give clearly different images."""
    rng = random.Random(seed)
    small = Image.new("RGB", (size[0] // 8, size[1] // 8))
    small.putdata(
        [tuple(rng.randrange(256) for _ in range(3)) for _ in range(small.width * small.height)]
    )
    out = io.BytesIO()
    small.resize(size, Image.Resampling.NEAREST).save(out, "JPEG", quality=95)
    return out.getvalue()


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")


def upload(
    url: str,
    device: str,
    camera: str,
    stem: str,
    image: bytes,
    labels: str,
    ts: float,
    class_names: list[str],
) -> httpx.Response:
    """POST one hard frame to the intake as a device does (its own bearer token)."""
    meta: dict[str, Any] = {"ts": rfc3339(ts), "class_names": class_names, "camera": camera}
    return httpx.post(
        f"{url}/v1/intake/{device}/{camera}",
        headers={"Authorization": f"Bearer {device_token(device)}"},
        files={
            "image": (f"{stem}.jpg", image, "image/jpeg"),
            "labels": (f"{stem}.txt", labels.encode(), "text/plain"),
            "meta": (f"{stem}.json", json.dumps(meta).encode(), "application/json"),
        },
        timeout=10,
    )


def make_base(root: Path, names: list[str], n_train: int, n_val: int, seed: int = 1000) -> Path:
    """A small Ultralytics dataset (as `edge-agent label` writes) with one box per image."""
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            stem = f"{i:06d}"
            (root / "images" / split / f"{stem}.jpg").write_bytes(
                jpeg(seed + i + (500 if split == "val" else 0))
            )
            (root / "labels" / split / f"{stem}.txt").write_text(
                f"{i % len(names)} 0.5 0.5 0.2 0.3\n"
            )
    data = {
        "train": "images/train",
        "val": "images/val",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root
