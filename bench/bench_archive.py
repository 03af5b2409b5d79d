"""Throughput of the gateway's detection archive: store + ack, through a real broker.

What runs: a private Mosquitto; `edge-gateway serve` as a subprocess with `archive.enabled`;
in this process, D publisher clients (one per simulated device, QoS 1, realistic 3-detection
payloads) sending N messages each as fast as the broker takes them, and one subscriber that
records the acks on `edge/+/ack`.

Figures: wall time from the first publish to the last ack covering every message; archived
messages/s; gateway CPU seconds per 1,000 messages; gateway peak RSS; rows in the archive.
A site of 10 devices x 4 cameras x 10 fps needs 400 msg/s.

    python bench/bench_archive.py --devices 10 --messages 3000 [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gatewayproc import MeteredGateway  # noqa: E402
from tests.gateway.conftest import cli, write_config  # noqa: E402
from tests.helpers.broker import Mosquitto, free_port, wait_port  # noqa: E402
from tests.helpers.messages import detection_payload  # noqa: E402


def payload(device: str, seq: int) -> bytes:
    return detection_payload(seq, device, boot_id="be4c0b007")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--messages", type=int, default=3000, help="per device")
    ap.add_argument("--markdown", action="store_true", help="print a docs/benchmarks.md row")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmpdir, Mosquitto(Path(tmpdir) / "broker") as broker:
        tmp = Path(tmpdir)
        http_port = free_port()
        config = write_config(
            tmp,
            broker.port,
            http_port,
            logging={"level": "warning"},
            archive={"enabled": True},
        )
        cli(config, "keys", "init")
        gw = MeteredGateway(config, tmp / "gw.log")
        try:
            wait_port(http_port, timeout=30)
            time.sleep(1.0)  # the gateway's MQTT subscription
            names = [f"dev-{i:02d}" for i in range(args.devices)]
            last = args.messages - 1
            acked: dict[str, int] = {}
            done = threading.Event()
            lock = threading.Lock()

            def on_ack(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
                body = json.loads(msg.payload)
                with lock:
                    for e in body["acks"]:
                        acked[body["device"]] = max(acked.get(body["device"], -1), e["seq_upto"])
                    if len(acked) == len(names) and all(v == last for v in acked.values()):
                        done.set()

            sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            sub.on_message = on_ack
            sub.connect("127.0.0.1", broker.port)
            sub.subscribe("edge/+/ack", qos=1)
            sub.loop_start()
            bodies = {n: [payload(n, s) for s in range(args.messages)] for n in names}
            pubs = []
            for n in names:
                c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{n}")
                c.max_inflight_messages_set(100)
                c.connect("127.0.0.1", broker.port)
                c.loop_start()
                pubs.append((n, c))
            time.sleep(0.5)

            gw.meter()
            t0 = time.monotonic()

            def send(name: str, client: mqtt.Client) -> None:
                topic = f"edge/{name}/cameras/cam-a/detections"
                for body in bodies[name]:
                    client.publish(topic, body, qos=1).wait_for_publish(30)

            threads = [threading.Thread(target=send, args=p) for p in pubs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            t_pub = time.monotonic() - t0
            if not done.wait(300):
                raise SystemExit(f"not every message was acked: {acked}")
            wall = time.monotonic() - t0
            cpu, peak_mb = gw.stop_meter()
            with sqlite3.connect(tmp / "data" / "detections.sqlite3") as db:
                rows = db.execute("SELECT COUNT(*) FROM detections").fetchone()[0]
            for _, c in pubs:
                c.loop_stop()
                c.disconnect()
            sub.loop_stop()
        finally:
            gw.terminate()
    total = args.devices * args.messages
    rate = total / wall
    print(
        f"{total} messages from {args.devices} devices: published in {t_pub:.1f} s, all acked "
        f"after {wall:.1f} s = {rate:,.0f} msg/s archived; gateway CPU {cpu:.1f} s "
        f"({cpu / total * 1000:.2f} s per 1,000), peak RSS {peak_mb:.0f} MB; "
        f"{rows} rows"
    )
    if args.markdown:
        print(
            f"| {args.devices} x {args.messages} | {rate:,.0f} | {wall:.1f} | {cpu:.1f} | "
            f"{cpu / total * 1000:.2f} | {peak_mb:.0f} | {rows} | "
            f"{platform.node()}, {psutil.cpu_count()} cores |"
        )


if __name__ == "__main__":
    main()
