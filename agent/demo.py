"""`edge-agent demo`: the daemon on the bundled clip and model, detections printed live.

Uses the broker of the config when one answers there; otherwise starts one for the demo
(a local `mosquitto` if installed, else the embedded pure-Python `amqtt` broker, MQTT
3.1.1 only) and says so. The daemon runs as a real subprocess (`python -m agent run`).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import paho.mqtt.client as mqtt
import yaml

from agent.cli_common import config_option
from agent.config import ConfigError, load_config
from agent.contracts.events import EventMessage
from agent.contracts.payloads import DetectionMessage
from agent.contracts.topics import detections_filter, events_filter
from agent.messages.render import detection_line, event_line


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port, 0.2):
            return True
        time.sleep(0.05)
    return False


def start_demo_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """Start a broker on a free loopback port: mosquitto if installed, else amqtt.

    Returns (process, port, protocol) where protocol is the MQTT version it speaks.
    """
    port = _free_port()
    if shutil.which("mosquitto"):
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        cmd = ["mosquitto", "-c", str(conf)]
        kind, protocol = "mosquitto", "v5"
    else:
        try:
            import amqtt  # noqa: F401
        except ImportError:
            raise click.ClickException(
                "no MQTT broker answers and none can be started: install Mosquitto "
                "(apt-get install mosquitto) or the embedded broker (pip install amqtt)"
            ) from None
        conf = workdir / "amqtt.yaml"
        conf.write_text(
            yaml.safe_dump(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        }
                    },
                }
            )
        )
        amqtt_bin = shutil.which("amqtt") or "amqtt"
        cmd = [amqtt_bin, "-c", str(conf)]
        kind, protocol = "amqtt (embedded, MQTT 3.1.1)", "v311"
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    if not _wait_port(port):
        proc.kill()
        raise click.ClickException(f"the demo broker ({kind}) did not start on port {port}")
    click.echo(f"demo: no broker answered; started {kind} on 127.0.0.1:{port} for this demo")
    return proc, port, protocol


@click.command("demo")
@config_option("Agent config to run.")
@click.option(
    "--seconds",
    type=float,
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
def demo_command(config_path: Path, seconds: float | None) -> None:
    """Run the daemon on the bundled clip and model, printing detections as they arrive."""
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        raise click.ClickException(f"{config_path}: " + "; ".join(err.problems)) from None
    broker: subprocess.Popen[bytes] | None = None
    host, port, protocol = cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.protocol
    with tempfile.TemporaryDirectory(prefix="edge-demo-") as tmp:
        workdir = Path(tmp)
        if port_open(host, port):
            click.echo(f"demo: using the broker at {host}:{port}")
        else:
            broker, port, protocol = start_demo_broker(workdir)
            host = "127.0.0.1"
        run_cfg = _write_run_config(config_path, workdir / "agent.yaml", host, port, protocol)
        printer = DetectionPrinter()
        sub = printer.subscribe(host, port, protocol, cfg.mqtt.topic_prefix, cfg.device.id)
        click.echo(f"demo: starting edge-agent (device {cfg.device.id}); Ctrl-C stops it")
        try:
            code = _run_daemon(run_cfg, seconds, cfg.stop_timeout_s + 5)
        finally:
            sub.loop_stop()
            sub.disconnect()
            if broker is not None:
                broker.terminate()
                broker.wait(5)
        click.echo(f"demo: {printer.count} detection message(s) received; daemon exit code {code}")
        if code not in (0, -signal.SIGTERM) or printer.count == 0:
            raise SystemExit(1)


def _write_run_config(src: Path, dst: Path, host: str, port: int, protocol: str) -> Path:
    """Copy the config at `src` to `dst` with the broker the demo uses; return `dst`."""
    data = yaml.safe_load(src.read_text())
    data["mqtt"] = {**data.get("mqtt", {}), "host": host, "port": port, "protocol": protocol}
    dst.write_text(yaml.safe_dump(data))
    return dst


class DetectionPrinter:
    """Prints every detection message and event of one device as a line, and counts the
    detection messages."""

    def __init__(self) -> None:
        self.count = 0

    def on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        try:
            if m.topic.endswith("/events"):
                click.echo(event_line(EventMessage.model_validate_json(m.payload)))
                return
            msg = DetectionMessage.model_validate_json(m.payload)
        except ValueError as err:
            click.echo(f"  (unparsable message on {m.topic}: {err})")
            return
        self.count += 1
        click.echo(detection_line(msg))

    def subscribe(
        self, host: str, port: int, protocol: str, prefix: str, device: str
    ) -> mqtt.Client:
        """Connect to the broker and subscribe to the device's detections and events (network
        loop started)."""
        sub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5 if protocol == "v5" else mqtt.MQTTv311,
        )
        sub.on_message = self.on_message
        topics = [(detections_filter(prefix, device), 1), (events_filter(prefix, device), 1)]
        sub.on_connect = lambda c, *_a: c.subscribe(topics)
        sub.connect(host, port)
        sub.loop_start()
        return sub


def _run_daemon(run_cfg: Path, seconds: float | None, stop_timeout_s: float) -> int:
    """Run `python -m agent run` until it exits, `seconds` pass or Ctrl-C; its exit code."""
    daemon = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(run_cfg)])
    try:
        daemon.wait(timeout=seconds)  # sleeps until it exits (seconds None: no time limit)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    return daemon.returncode
