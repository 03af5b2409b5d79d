"""`edge-gateway serve`: uvicorn (API, artifacts, intake) + an MQTT client thread + a ticker.

The MQTT side (paho-mqtt 2.x) subscribes to every device's retained `status` and `ota/state`
and to `health`, hands each message to the `Fleet`, and publishes the signed commands the fleet
produces. After each (re)connect it re-sends commands that were saved but not yet answered.
Deadlines are checked only once the retained states have had `grace_s` to arrive after a
subscription, so a gateway that was down does not time out devices that finished meanwhile.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from agent.contracts.topics import (
    Topics,
    config_state_filter,
    detections_filter,
    events_filter,
    florence_ota_state_filter,
    health_filter,
    live_extras_filters,
    ota_state_filter,
    status_filter,
)
from agent.gateway.archive import DetectionArchive
from agent.gateway.config import GatewayConfig, GatewayMqttConfig
from agent.gateway.config_push import ConfigPushes
from agent.gateway.db import Store
from agent.gateway.fleet import Fleet
from agent.gateway.keys import KeyRole, load_key
from agent.gateway.web.live import LiveCache, tee
from agent.trust.signing import sign
from agent.trust.tls import build_tls_context

log = structlog.get_logger(__name__)

MessageHandler = Callable[[str, bytes, bool], None]


class MqttLink:
    """The gateway's MQTT client; `publish` is safe from any thread."""

    def __init__(
        self,
        cfg: GatewayMqttConfig,
        on_message: MessageHandler,
        on_connected: Callable[[], None] = lambda: None,
        on_detection: Callable[[str, bytes], None] | None = None,
        on_live: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_detection = on_detection  # the archive; None: detections not subscribed
        self._on_live = on_live  # the Live page's snapshots and counts; None: not subscribed
        self.subscribed_at: float | None = None
        self.connected = False
        self._refresh_mids: dict[int, list[str]] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(200)
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, cfg.password())
        if cfg.tls is not None:
            self.client.tls_set_context(build_tls_context(cfg.tls, "mqtt.tls"))
        self.client.reconnect_delay_set(0.5, 10)
        self.client.on_connect = self._connect
        self.client.on_disconnect = self._disconnect
        self.client.on_subscribe = self._subscribed
        self.client.on_message = self._message

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def refresh(self, device: str) -> None:
        """Ask the broker again for `device`'s retained status and OTA state (after enrolment:
        what it sent before was ignored). The extra subscriptions end at their SUBACK, after
        the broker has queued the retained messages."""
        own = Topics(device, self.cfg.topic_prefix)
        topics = [own.status, own.ota_state, own.config_state]
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        self._refresh_mids[mid] = topics

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish queued while disconnected", topic=topic, rc=info.rc)

    def _connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.error("mqtt connect refused", reason=str(reason_code))
            return
        self.connected = True
        self.subscribed_at = None
        p = self.cfg.topic_prefix
        subs = [
            (status_filter(p), 1),
            (ota_state_filter(p), 1),
            (florence_ota_state_filter(p), 1),
            (health_filter(p), 0),
        ]
        subs.append((config_state_filter(p), 1))  # answers to camera config pushes
        if self._on_detection is not None:
            subs += [(detections_filter(p), 1), (events_filter(p), 1)]
        if self._on_live is not None:
            subs += [(f, 0) for f in live_extras_filters(p)]
        client.subscribe(subs)
        log.info("mqtt connected", host=self.cfg.host, port=self.cfg.port)

    def _subscribed(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        refreshed = self._refresh_mids.pop(mid, None)
        if refreshed is not None:
            client.unsubscribe(refreshed)
            return
        self.subscribed_at = time.monotonic()
        try:
            self._on_connected()
        except Exception:  # noqa: BLE001 - a bug here must not kill paho's network thread
            log.exception("re-sending pending commands failed")

    def _disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self.connected = False
        self.subscribed_at = None
        log.warning("mqtt disconnected", reason=str(reason_code))

    def _message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        try:
            archived = msg.topic.endswith(("/detections", "/events"))
            if self._on_detection is not None and archived:
                self._on_detection(msg.topic, msg.payload)
                return
            if self._on_live is not None and "/cameras/" in msg.topic:
                self._on_live(msg.topic, msg.payload)
                return
            self._on_message(msg.topic, msg.payload, bool(msg.retain))
        except Exception:  # noqa: BLE001 - one bad message must not kill the network thread
            log.exception("handling a device message failed", topic=msg.topic)


class Ticker(threading.Thread):
    """Calls `fleet.tick()` every `interval_s` once the link has been subscribed `grace_s`."""

    def __init__(self, fleet: Fleet, link: MqttLink, interval_s: float, grace_s: float) -> None:
        super().__init__(name="gateway-ticker", daemon=True)
        self.fleet, self.link = fleet, link
        self.interval_s, self.grace_s = interval_s, grace_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            since = self.link.subscribed_at
            if since is None or time.monotonic() - since < self.grace_s:
                continue
            try:
                self.fleet.tick()
            except Exception:  # noqa: BLE001 - keep ticking; the error is logged with its trace
                log.exception("rollout tick failed")


def _live_fields(
    link: MqttLink, archive: DetectionArchive | None
) -> Callable[[], dict[str, object]]:
    """The live part of /v1/health: MQTT connection and archive counters."""

    def live() -> dict[str, object]:
        out: dict[str, object] = {"mqtt_connected": link.connected}
        if archive is not None:
            out["archive"] = asdict(archive.stats)
        return out

    return live


def route_config_state(
    pushes: ConfigPushes, on_message: MessageHandler, prefix: str
) -> MessageHandler:
    """Device messages: `config/state` to the config pushes, the rest to `on_message`."""

    def route(topic: str, payload: bytes, retained: bool) -> None:
        parts = topic.split("/")
        if len(parts) == 4 and parts[0] == prefix and parts[2:] == ["config", "state"]:
            pushes.on_state(parts[1], payload)
        else:
            on_message(topic, payload, retained)

    return route


def _http_server(cfg: GatewayConfig, app: object) -> Any:
    """A uvicorn server for `app` on the configured address (its own signal handling)."""
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=cfg.http.host,
            port=cfg.http.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )


def _start_archive(
    cfg: GatewayConfig, fleet: Fleet, gateway_key: Any, holder: dict[str, MqttLink]
) -> DetectionArchive | None:
    """The detection archive (acks what it stored), started, when `archive.enabled`."""
    if not cfg.archive.enabled:
        return None
    archive = DetectionArchive(
        cfg.archive_path,
        cfg.archive,
        lambda topic, payload: holder["link"].publish(topic, payload),
        signer=functools.partial(sign, private_key=gateway_key),
        is_enrolled=fleet.is_enrolled,
        prefix=cfg.mqtt.topic_prefix,
    )
    archive.start()
    return archive


def serve(cfg: GatewayConfig, grace_s: float = 2.0) -> None:
    """Run the gateway until SIGTERM/SIGINT (uvicorn handles the signals)."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    gateway_key = load_key(cfg.keys_dir, KeyRole.GATEWAY)
    with Store(cfg.db_path) as store:
        holder: dict[str, MqttLink] = {}
        fleet = Fleet(
            store,
            gateway_key,
            lambda topic, payload: holder["link"].publish(topic, payload),
            public_url=cfg.http.public_url,
            prefix=cfg.mqtt.topic_prefix,
            command_ttl_s=cfg.rollout.command_ttl_s,
            resend_s=cfg.rollout.resend_s,
        )
        fleet.load()
        pushes = ConfigPushes(
            fleet, gateway_key, lambda t, p: holder["link"].publish(t, p), cfg.rollout.command_ttl_s
        )
        archive = _start_archive(cfg, fleet, gateway_key, holder)
        live = LiveCache(cfg.mqtt.topic_prefix, fed=archive is not None)  # the Live page
        link = MqttLink(
            cfg.mqtt,
            route_config_state(pushes, fleet.on_message, cfg.mqtt.topic_prefix),
            fleet.resend,
            on_detection=None if archive is None else tee(archive.on_message, live.on_message),
            on_live=None if archive is None else live.on_extra,
        )
        from agent.gateway.api.app import create_app

        # the app first: commands go out once the link starts, and their artifact URLs must
        # answer as soon as possible after that
        health = _live_fields(link, archive)
        app = create_app(cfg, store, fleet, health=health, live=live, config_pushes=pushes)
        server = _http_server(cfg, app)
        holder["link"] = link
        fleet.on_enrolled = link.refresh
        link.start()
        ticker = Ticker(fleet, link, cfg.rollout.tick_s, grace_s)
        ticker.start()
        log.info(
            "gateway serving", host=cfg.http.host, port=cfg.http.port, rollouts=len(fleet.active)
        )
        try:
            server.run()
        finally:
            ticker.stop_event.set()
            ticker.join(timeout=5)
            link.stop()
            if archive is not None:
                archive.stop()
            log.info("gateway stopped")
