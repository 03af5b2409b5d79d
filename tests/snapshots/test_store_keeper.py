"""Snapshot files (quota, atomic replace, restart) and the keeper's write/publish decisions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.contracts.topics import Topics
from agent.snapshots.config import SnapshotsConfig
from agent.snapshots.encode import fit, render
from agent.snapshots.keeper import SnapshotKeeper
from agent.snapshots.store import SnapshotStore
from agent.snapshots.writer import SnapshotWriter

CAM = "yard"


def frame(seed: int = 0, h: int = 576, w: int = 768) -> np.ndarray:
    """A noisy frame (noise makes JPEGs big, as real scenes do)."""
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def published() -> list[tuple[str, bytes]]:
    return []


def keeper(
    tmp_path: Path, published: list[tuple[str, bytes]], clock: Clock, **kw: object
) -> SnapshotKeeper:
    cfg = SnapshotsConfig(**kw)  # type: ignore[arg-type]
    writer = SnapshotWriter(
        cfg, tmp_path, Topics("dev1"), lambda t, p: published.append((t, p)), threaded=False
    )
    return SnapshotKeeper(writer, clock=clock)


def test_render_draws_the_box_and_crops() -> None:
    """The full frame keeps its size with the box drawn; the crop is the padded box."""
    img = np.zeros((576, 768, 3), np.uint8)
    full, crop = render(img, (100, 100, 200, 300), "person 0.91", 90, 0.1)
    f, c = decode(full), decode(crop)
    assert f.shape == (576, 768, 3) and f[200, 100].max() > 100  # the box's left edge
    assert c.shape == (240, 120, 3)


def test_fit_reencodes_below_the_cap() -> None:
    """A JPEG over the cap comes back smaller than the cap and still decodes."""
    full, _ = render(frame(), (100, 100, 200, 300), "x", 95, 0.1)
    assert len(full) > 200_000
    small = fit(full, 100_000)
    assert len(small) <= 100_000 and decode(small).shape[2] == 3
    assert fit(small, 100_000) is small


def test_store_quota_evicts_oldest_events(tmp_path: Path) -> None:
    """Past the quota whole events go, oldest first; the newest stays."""
    store = SnapshotStore(tmp_path, quota_bytes=2500)
    for i in range(4):
        store.save(CAM, f"boot-{CAM}-{i}", b"f" * 1000, b"c" * 100)
    names = sorted(p.name for p in (tmp_path / "snapshots" / CAM).iterdir())
    assert names == [f"boot-{CAM}-{i}{s}" for i in (2, 3) for s in (".crop.jpg", ".jpg")]
    assert store.evicted == 2 and store.used_bytes == 2200


def test_store_counts_files_of_a_previous_run_and_drops_temp_leftovers(tmp_path: Path) -> None:
    """A restart counts the files already there towards the quota and removes temp files."""
    first = SnapshotStore(tmp_path, quota_bytes=10_000)
    saved = first.save(CAM, "old-yard-1", b"f" * 3000, b"c" * 100)
    leftover = saved.full.with_name(".x.jpg.tmp-123")
    leftover.write_bytes(b"partial")
    second = SnapshotStore(tmp_path, quota_bytes=5000)
    assert second.used_bytes == 3100 and not leftover.exists()
    second.save(CAM, "new-yard-2", b"f" * 3000, b"c" * 100)
    assert not saved.full.exists(), "the previous run's file is the oldest: evicted"


def test_keeper_writes_first_frame_then_rate_limits_and_finishes_with_the_best(
    tmp_path: Path, published: list[tuple[str, bytes]]
) -> None:
    """First frame: written and published; better frames within the interval wait; `finish`
    writes the best one, publishes it, and the file holds that frame."""
    clock = Clock()
    k = keeper(tmp_path, published, clock, min_interval_s=5.0, publish_max_bytes=900 * 1024)
    first = k.offer(CAM, "b-yard-1", "person", frame(1), (100, 100, 200, 300), 0.5, 10.0)
    assert first is not None and first.path == "snapshots/yard/b-yard-1.jpg"
    assert [t for t, _ in published] == ["edge/dev1/cameras/yard/snapshot/person"]
    clock.t += 1
    assert k.offer(CAM, "b-yard-1", "person", frame(2), (110, 100, 210, 300), 0.8, 11.0) is None
    assert k.offer(CAM, "b-yard-1", "person", frame(3), (120, 100, 220, 300), 0.6, 12.0) is None
    assert len(published) == 1
    final = k.finish("b-yard-1")
    assert final is not None and (final.ts, final.score) == (11.0, 0.8)
    assert len(published) == 2 and k.open_events == 0
    on_disk = (tmp_path / final.path).read_bytes()
    assert published[-1][1] == on_disk, "the published bytes are the written file"
    assert k.finish("b-yard-1") is None


def test_keeper_publishes_a_better_frame_after_the_interval(
    tmp_path: Path, published: list[tuple[str, bytes]]
) -> None:
    """A pending better frame is written and published once the interval has passed."""
    clock = Clock()
    k = keeper(tmp_path, published, clock, min_interval_s=5.0)
    k.offer(CAM, "b-yard-2", "car", frame(1), (100, 100, 200, 300), 0.5, 1.0)
    clock.t += 1
    assert k.offer(CAM, "b-yard-2", "car", frame(2), (100, 100, 200, 300), 0.9, 2.0) is None
    clock.t += 5
    later = k.offer(CAM, "b-yard-2", "car", frame(3), (100, 100, 200, 300), 0.7, 7.0)
    assert later is not None and later.score == 0.9 and len(published) == 2


def test_keeper_prefers_an_uncut_frame(tmp_path: Path, published: list[tuple[str, bytes]]) -> None:
    """A high-score box cut by the frame edge loses to a lower-score whole one."""
    k = keeper(tmp_path, published, Clock(), min_interval_s=0)
    k.offer(CAM, "b-yard-3", "person", frame(1), (0, 100, 80, 300), 0.95, 1.0)
    best = k.offer(CAM, "b-yard-3", "person", frame(2), (20, 100, 100, 300), 0.6, 2.0)
    assert best is not None and best.score == 0.6
    assert k.offer(CAM, "b-yard-3", "person", frame(3), (0, 90, 80, 300), 0.99, 3.0) is None


def test_keeper_caps_published_bytes_but_keeps_the_file(
    tmp_path: Path, published: list[tuple[str, bytes]]
) -> None:
    """A file larger than `publish_max_bytes` is published re-encoded under the cap."""
    k = keeper(tmp_path, published, Clock(), jpeg_quality=98, publish_max_bytes=64 * 1024)
    info = k.offer(CAM, "b-yard-4", "person", frame(4), (100, 100, 200, 300), 0.7, 1.0)
    assert info is not None
    assert (tmp_path / info.path).stat().st_size > 64 * 1024
    assert len(published[0][1]) <= 64 * 1024 and decode(published[0][1]).ndim == 3


def test_keeper_survives_an_unwritable_store(
    tmp_path: Path, published: list[tuple[str, bytes]]
) -> None:
    """A failed write is counted and logged; nothing is published and the frame path goes on."""
    k = keeper(tmp_path, published, Clock())
    (tmp_path / "snapshots" / CAM).write_bytes(b"not a folder")
    k.offer(CAM, "b-yard-5", "person", frame(5), (100, 100, 200, 300), 0.7, 1.0)
    assert k._writer.failures == 1 and published == []


def test_threaded_writer_publishes_after_the_file_and_drains_at_close(tmp_path: Path) -> None:
    """Off the frame path: the offer returns at once with the file name; the file is complete
    before its retained message, and `close` finishes the queued jobs."""
    published: list[tuple[str, bytes, bool]] = []
    cfg = SnapshotsConfig(min_interval_s=0, publish_max_bytes=900 * 1024)

    def publish(topic: str, payload: bytes) -> None:
        on_disk = (tmp_path / "snapshots" / CAM / "b-yard-6.jpg").read_bytes()
        published.append((topic, payload, payload == on_disk))

    k = SnapshotKeeper(SnapshotWriter(cfg, tmp_path, Topics("dev1"), publish))
    for i in range(5):
        k.offer(CAM, "b-yard-6", "person", frame(i), (100, 100, 200, 300), 0.5 + i / 10, i)
    final = k.finish("b-yard-6")
    assert final is not None and final.score == 0.9
    assert k.close(10)
    assert len(published) == 6 and all(same for _t, _p, same in published)
    assert decode((tmp_path / final.path).read_bytes()).shape == (576, 768, 3)
