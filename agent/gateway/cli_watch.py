"""`edge-gateway watch`: live detections from the broker, one line per frame, gaps flagged;
with `--events`, tracked-object events instead, one line per event."""

from __future__ import annotations

import os
import threading
from typing import Any

import click

from agent.gateway.cli_common import config_of
from agent.gateway.config import GatewayMqttConfig


class Printer:
    """Prints each detection message as one line and flags gaps in YOLO sequences."""

    def __init__(self, count: int, done: threading.Event) -> None:
        self.count, self.done = count, done
        self.seen = 0
        self.last_seq: dict[tuple[str, str, str], int] = {}

    def on_payload(self, topic: str, payload: bytes) -> None:
        from pydantic import ValidationError

        from agent.contracts.payloads import DetectionMessage
        from agent.messages.render import detection_line

        if topic.endswith("/events"):
            self.on_event(topic, payload)
            return
        try:
            det = DetectionMessage.model_validate_json(payload)
        except ValidationError as err:
            click.echo(f"malformed message on {topic}: {err.errors()[0]['msg']}", err=True)
            return
        if det.source == "yolo":
            self._flag_gap((det.device, det.camera, det.boot_id), det.seq, "on")
        self._print(detection_line(det))

    def on_event(self, topic: str, payload: bytes) -> None:
        from pydantic import ValidationError

        from agent.contracts.events import EventMessage
        from agent.messages.render import event_line

        try:
            ev = EventMessage.model_validate_json(payload)
        except ValidationError as err:
            click.echo(f"malformed event on {topic}: {err.errors()[0]['msg']}", err=True)
            return
        self._flag_gap((ev.device, ev.camera, ev.boot_id + "/events"), ev.seq, "in events of")
        self._print(event_line(ev))

    def _flag_gap(self, key: tuple[str, str, str], seq: int, where: str) -> None:
        """Print a line when `seq` does not follow the last one of its stream `key`."""
        prev = self.last_seq.get(key)
        if prev is not None and seq != prev + 1:
            click.echo(f"  ! gap {where} {key[0]}/{key[1]}: #{prev} -> #{seq}")
        self.last_seq[key] = seq

    def _print(self, line: str) -> None:
        click.echo(line)
        self.seen += 1
        if self.count and self.seen >= self.count:
            self.done.set()


def subscriber(cfg: GatewayMqttConfig, filters: list[str], printer: Printer) -> Any:
    """A connected paho client that feeds `printer` (network loop started)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-gateway-watch-{os.getpid()}")
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password())
    client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
    client.on_message = lambda _c, _u, msg: printer.on_payload(msg.topic, msg.payload)
    client.connect(cfg.host, cfg.port, cfg.keepalive_s)
    client.loop_start()
    return client


@click.command("watch")
@click.option("--devices", "devices_", default="+", help="Comma-separated device ids (all: +).")
@click.option("--cameras", default="+", help="Comma-separated camera ids (all: +).")
@click.option("--count", type=int, default=0, help="Stop after this many messages (0: never).")
@click.option("--duration", type=float, default=0.0, help="Stop after this many seconds.")
@click.option(
    "--events", "events_", is_flag=True, help="Show tracked-object events instead, one line each."
)
@click.pass_context
def watch(
    ctx: click.Context, devices_: str, cameras: str, count: int, duration: float, events_: bool
) -> None:
    """Live detections from chosen devices/cameras, one line per frame; gaps are flagged.
    With --events: their tracked-object events (new/update/end), one line per event."""
    from agent.contracts.topics import detections_filter, events_filter

    cfg = config_of(ctx)
    make = events_filter if events_ else detections_filter
    filters = [
        make(cfg.mqtt.topic_prefix, d.strip(), c.strip())
        for d in devices_.split(",")
        for c in cameras.split(",")
    ]
    done = threading.Event()
    client = subscriber(cfg.mqtt, filters, Printer(count, done))
    try:
        done.wait(duration or None)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
