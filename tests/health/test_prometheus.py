"""The Prometheus exposition: monotonic counts are counters, levels are gauges."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from agent.health.metrics import FrameRecord, FrameWindow
from agent.health.prometheus import CameraSample, MetricsSnapshot, metric_families


def snapshot() -> MetricsSnapshot:
    """A snapshot of a daemon that inferred three frames (one failed) and dropped messages."""
    window = FrameWindow()
    for i in range(3):
        window.add(FrameRecord(mono=100.0 + i, latency_ms=10.0, detections=1, frame_age_ms=5.0))
    window.add(FrameRecord(100.5, 0.0, 0, 0.0, error=True))
    return MetricsSnapshot(
        frames_total=window.total_frames,
        errors_total=window.total_errors,
        last_minute=window.summary(60.0, 103.0),
        outbox_depth=4,
        outbox_dropped_total=7,
        queue_dropped_total=2,
        connected=True,
        cameras=(CameraSample("cam1", "streaming", 12.5),),
    )


class _Fixed(Collector):
    def __init__(self, snap: MetricsSnapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterator:
        yield from metric_families(self._snap)


def exposition(snap: MetricsSnapshot) -> str:
    """The text /metrics would serve for `snap`."""
    registry = CollectorRegistry()
    registry.register(_Fixed(snap))
    return generate_latest(registry).decode()


def test_drop_counts_are_counters_with_total_suffix() -> None:
    """Outbox and queue drops are exported as counters named `..._total`."""
    text = exposition(snapshot())
    assert "# TYPE edge_outbox_dropped_total counter" in text
    assert "edge_outbox_dropped_total 7.0" in text
    assert "# TYPE edge_publish_queue_dropped_total counter" in text
    assert "edge_publish_queue_dropped_total 2.0" in text


def test_frame_counts_are_counters() -> None:
    """Frames and inference errors since start are counters."""
    text = exposition(snapshot())
    assert "edge_frames_processed_total 3.0" in text
    assert "edge_inference_errors_total 1.0" in text


def test_levels_are_gauges() -> None:
    """Depth, connection and per-camera fps are gauges with their labels."""
    text = exposition(snapshot())
    assert "# TYPE edge_outbox_depth gauge" in text
    assert "edge_outbox_depth 4.0" in text
    assert "edge_mqtt_connected 1.0" in text
    assert 'edge_camera_fps{camera="cam1",state="streaming"} 12.5' in text
