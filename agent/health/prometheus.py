"""Prometheus metrics endpoint (prometheus-client), served only when a port is configured.

A custom collector reads the daemon's live counters at scrape time, so the hot path pays
nothing for it. Reading (`snapshot_from`, through the small `MetricsSource` protocol) is kept
apart from rendering (`metric_families`, pure), and this module never imports the daemon.

Metrics (monotonic counts are Prometheus counters, exposed with a `_total` suffix):

| name | type | meaning |
| --- | --- | --- |
| `edge_frames_processed_total` | counter | frames inferred since start |
| `edge_inference_errors_total` | counter | failed inferences since start |
| `edge_outbox_dropped_total` | counter | messages dropped by the outbox cap since start |
| `edge_publish_queue_dropped_total` | counter | messages refused by the hand-off queue |
| `edge_fps` | gauge | frames inferred per second, last minute |
| `edge_latency_ms{quantile}` | gauge | frame latency p50 / p99, last minute |
| `edge_outbox_depth` | gauge | messages awaiting delivery |
| `edge_mqtt_connected` | gauge | 1 while connected to the broker |
| `edge_camera_fps{camera,state}` | gauge | camera fps reaching inference |

prometheus-client's default process collector adds `process_cpu_seconds_total` (every
thread, user + system), so the health message's `cpu_ms_per_frame` over any range is
`1000 * rate(process_cpu_seconds_total[5m]) / rate(edge_frames_processed_total[5m])`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.health.metrics import FrameWindow, WindowSummary

if TYPE_CHECKING:
    from agent.contracts.payloads import CameraStatus
    from agent.publish.publisher import PublisherStats

Family = GaugeMetricFamily | CounterMetricFamily


class PublisherLike(Protocol):
    """Anything with the publisher's `stats()`."""

    def stats(self) -> PublisherStats: ...


class MetricsSource(Protocol):
    """The parts of the daemon the collector reads (the daemon satisfies it structurally)."""

    @property
    def window(self) -> FrameWindow: ...
    @property
    def pipeline(self) -> object | None: ...
    @property
    def publisher(self) -> PublisherLike | None: ...
    def camera_statuses(self) -> Sequence[CameraStatus]: ...


@dataclass(frozen=True)
class CameraSample:
    """One camera's row of `edge_camera_fps`."""

    id: str
    state: str
    fps: float


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything one scrape shows, read at once.

    Attributes:
        frames_total: frames inferred since start.
        errors_total: failed inferences since start.
        last_minute: frame rate and latency percentiles over the last 60 s.
        outbox_depth: messages awaiting delivery.
        outbox_dropped_total: messages dropped by the outbox cap since start.
        queue_dropped_total: messages refused by the hand-off queue since start.
        connected: whether the publisher is connected to the broker.
        cameras: one sample per camera.
    """

    frames_total: int
    errors_total: int
    last_minute: WindowSummary
    outbox_depth: int
    outbox_dropped_total: int
    queue_dropped_total: int
    connected: bool
    cameras: tuple[CameraSample, ...]


def snapshot_from(source: MetricsSource, now_mono: float) -> MetricsSnapshot | None:
    """Read a snapshot from a running daemon; None while it is still starting."""
    publisher = source.publisher
    if source.pipeline is None or publisher is None:
        return None
    window = source.window
    p = publisher.stats()
    return MetricsSnapshot(
        frames_total=window.total_frames,
        errors_total=window.total_errors,
        last_minute=window.summary(now_mono - 60.0, now_mono),
        outbox_depth=p.outbox_depth,
        outbox_dropped_total=p.outbox_dropped,
        queue_dropped_total=p.queue_dropped,
        connected=p.connected,
        cameras=tuple(CameraSample(c.id, c.state, c.fps) for c in source.camera_statuses()),
    )


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def metric_families(snap: MetricsSnapshot) -> list[Family]:
    """The metric families of one scrape (pure: a snapshot in, families out)."""
    s = snap.last_minute
    lat = GaugeMetricFamily(
        "edge_latency_ms", "Frame latency percentiles, last minute", labels=["quantile"]
    )
    if s.latency_p50_ms is not None and s.latency_p99_ms is not None:
        lat.add_metric(["0.5"], s.latency_p50_ms)
        lat.add_metric(["0.99"], s.latency_p99_ms)
    cams = GaugeMetricFamily(
        "edge_camera_fps", "Camera fps reaching inference", labels=["camera", "state"]
    )
    for c in snap.cameras:
        cams.add_metric([c.id, c.state], c.fps)
    return [
        _counter("edge_frames_processed", "Frames inferred since start", snap.frames_total),
        _counter("edge_inference_errors", "Failed inferences since start", snap.errors_total),
        _gauge("edge_fps", "Frames inferred per second, last minute", s.fps),
        lat,
        _gauge("edge_outbox_depth", "Messages awaiting delivery", snap.outbox_depth),
        _counter(
            "edge_outbox_dropped", "Messages dropped by the outbox cap", snap.outbox_dropped_total
        ),
        _counter(
            "edge_publish_queue_dropped",
            "Messages refused by the hand-off queue",
            snap.queue_dropped_total,
        ),
        _gauge("edge_mqtt_connected", "1 while connected to the broker", int(snap.connected)),
        cams,
    ]


class DaemonCollector(Collector):
    """Turns the daemon's counters into Prometheus metric families on each scrape."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Family]:
        snap = snapshot_from(self._source, time.monotonic())
        if snap is not None:
            yield from metric_families(snap)


class PrometheusExporter:
    """Registers the collector and serves /metrics on addr:port in a daemon thread."""

    def __init__(self, source: MetricsSource, addr: str, port: int) -> None:
        self._collector = DaemonCollector(source)
        self._addr = addr
        self._port = port

    def start(self) -> None:
        REGISTRY.register(self._collector)
        start_http_server(self._port, addr=self._addr)
