"""configs/mosquitto/bridge.conf.example, uncommented and filled in, really bridges upstream."""

from __future__ import annotations

import re
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.broker import Mosquitto, free_port
from tests.publish.shipped import CONF_DIR, make_certs
from tests.publish.support import wait_for

pytestmark = pytest.mark.slow

OPTIONS = (
    "connection address round_robin remote_clientid bridge_cafile bridge_certfile bridge_keyfile "
    "bridge_insecure bridge_protocol_version cleansession start_type restart_timeout "
    "keepalive_interval try_private notifications notification_topic topic"
).split()


def render_bridge(upstream_port: int, certs: Path) -> str:
    """The template with its option lines uncommented and the placeholders filled in."""
    text = (CONF_DIR / "bridge.conf.example").read_text()
    opt = re.compile(rf"^# ((?:{'|'.join(OPTIONS)}) .+)$", re.M)
    lines = opt.findall(text)
    assert {line.split()[0] for line in lines} == set(OPTIONS), "template options changed"
    out = "\n".join(lines)
    for old, new in {
        "<name>": "upstream",
        "<cluster-host>:8883": f"localhost:{upstream_port}",
        "<site-id>": "site-1",
        "/etc/mosquitto/upstream/ca.crt": str(certs / "ca.crt"),
        "/etc/mosquitto/upstream/site.crt": str(certs / "device-site-1.crt"),
        "/etc/mosquitto/upstream/site.key": str(certs / "device-site-1.key"),
    }.items():
        assert old in out, old
        out = out.replace(old, new)
    return out


def test_bridge_template_forwards_detections_under_the_site_prefix(tmp_path: Path) -> None:
    """A detection published at the site arrives upstream under sites/<site-id>/ over mTLS."""
    certs = tmp_path / "certs"
    make_certs(certs, ["ca"], ["server", "localhost"], ["device", "site-1"])
    up_port = free_port()
    upstream_conf = (
        f"user root\nlistener {up_port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {certs}/ca.crt\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n"
        "require_certificate true\n"
    )
    upstream = Mosquitto(tmp_path / "up", port=up_port, listener=False, extra_conf=upstream_conf)
    site = Mosquitto(tmp_path / "site", extra_conf="user root\n" + render_bridge(up_port, certs))
    with upstream, site:
        got: list[tuple[str, bytes]] = []
        subscribed = threading.Event()
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ctx_sub = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        ctx_sub.load_cert_chain(str(certs / "device-site-1.crt"), str(certs / "device-site-1.key"))
        sub.tls_set_context(ctx_sub)
        sub.on_message = lambda c, u, m: got.append((m.topic, m.payload))
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.connect("localhost", up_port)
        sub.subscribe("sites/#", 1)
        sub.loop_start()
        try:
            assert subscribed.wait(5)
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            pub.connect("127.0.0.1", site.port)
            pub.loop_start()
            topic = "edge/dev-a/cameras/cam1/detections"

            # The bridge connects on its own schedule: publish until one copy arrives upstream.
            def delivered() -> bool:
                pub.publish(topic, b"det", qos=1)
                return any(t == f"sites/site-1/{topic}" for t, _ in got)

            wait_for(delivered, 15, "detection forwarded upstream", every=0.3)
            pub.disconnect()
            pub.loop_stop()
        finally:
            sub.disconnect()
            sub.loop_stop()
