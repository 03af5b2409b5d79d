"""A running daemon's /metrics: the collector reads the live daemon through its protocol."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.daemon import DaemonProcess, demo_config
from tests.helpers.polling import wait_for


def scrape(port: int) -> str:
    """The /metrics text, or '' while the server is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except (urllib.error.URLError, OSError):
        return ""


def frames(text: str) -> float:
    """The value of edge_frames_processed_total in a scrape (0 when absent)."""
    m = re.search(r"^edge_frames_processed_total (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def test_daemon_serves_counters_and_gauges(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The demo daemon's /metrics shows frames processed and drop counts as counters."""
    port = free_port()
    health = {"prometheus_port": port}
    cfg = demo_config(tmp_path / "state", mosquitto.port, health=health)
    with DaemonProcess(tmp_path / "d", cfg) as d:
        text = wait_for(
            lambda: (t := scrape(port)) and frames(t) > 0 and t,
            60,
            "frames in /metrics",
            every=0.2,
            explain=d.log,
        )
    assert "# TYPE edge_outbox_dropped_total counter" in text
    assert "# TYPE edge_publish_queue_dropped_total counter" in text
    assert re.search(r'^edge_camera_fps\{camera="cam-a",state="\w+"\} ', text, re.MULTILINE)
    assert "edge_mqtt_connected 1.0" in text
