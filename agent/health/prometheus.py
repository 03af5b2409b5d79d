"""Prometheus metrics endpoint (prometheus-client), served only when a port is configured.

A custom collector reads the daemon's live counters at scrape time, so the hot path pays
nothing for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from agent.daemon import Daemon


class DaemonCollector(Collector):
    """Turns the daemon's counters into Prometheus metric families on each scrape."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        d = self._d
        if d.pipeline is None or d.publisher is None:
            return
        now = time.monotonic()
        s = d.window.summary(now - 60.0, now)
        frames = CounterMetricFamily("edge_frames_processed", "Frames inferred since start")
        frames.add_metric([], d.window.total_frames)
        yield frames
        errors = CounterMetricFamily("edge_inference_errors", "Failed inferences since start")
        errors.add_metric([], d.window.total_errors)
        yield errors
        fps = GaugeMetricFamily("edge_fps", "Frames inferred per second, last minute")
        fps.add_metric([], s.fps)
        yield fps
        lat = GaugeMetricFamily(
            "edge_latency_ms", "Frame latency percentiles, last minute", labels=["quantile"]
        )
        if s.latency_p50_ms is not None and s.latency_p99_ms is not None:
            lat.add_metric(["0.5"], s.latency_p50_ms)
            lat.add_metric(["0.99"], s.latency_p99_ms)
        yield lat
        p = d.publisher.stats()
        for name, value, doc in (
            ("edge_outbox_depth", p.outbox_depth, "Messages awaiting delivery"),
            ("edge_outbox_dropped", p.outbox_dropped, "Messages dropped by the outbox cap"),
            (
                "edge_publish_queue_dropped",
                p.queue_dropped,
                "Messages refused by the hand-off queue",
            ),
            ("edge_mqtt_connected", int(p.connected), "1 while connected to the broker"),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g
        cams = GaugeMetricFamily(
            "edge_camera_fps", "Camera fps reaching inference", labels=["camera", "state"]
        )
        for c in d.camera_statuses():
            cams.add_metric([c.id, c.state], c.fps)
        yield cams


class PrometheusExporter:
    """Registers the collector and serves /metrics on addr:port in a daemon thread."""

    def __init__(self, daemon: Daemon, addr: str, port: int) -> None:
        self._collector = DaemonCollector(daemon)
        self._addr = addr
        self._port = port

    def start(self) -> None:
        REGISTRY.register(self._collector)
        start_http_server(self._port, addr=self._addr)
