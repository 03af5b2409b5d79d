"""`edge-agent run`: wires sources, engine, publisher, health, fallback and OTA together.

The main thread supervises: it publishes health, pings the systemd watchdog while the
pipeline makes progress, republishes status when a camera changes state, and on
SIGTERM/SIGINT stops everything in order (sources, inference, fallback, OTA, publisher
drain, explicit offline status) within `stop_timeout_s`. It stops the same way, and the
process exits 0, once every camera is a file with `every_frame: true, loop: false` whose last
frame the inference loop has taken (a recording processed end to end).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import structlog

from agent import __version__
from agent.cli_common import config_option, echo_problems
from agent.config import AgentConfig, ConfigError, load_config
from agent.contracts.payloads import (
    CameraStatus,
    HealthMessage,
    StatusMessage,
    dump_payload,
    rfc3339_ms,
)
from agent.contracts.streams import Stream
from agent.contracts.topics import Topics
from agent.health.cpu import CpuPerFrame
from agent.health.metrics import FrameWindow
from agent.health.notify import Notifier
from agent.live import LiveConfig, LiveConfigBox
from agent.live_reload import Reloader
from agent.logs import configure_logging
from agent.pipeline import Pipeline, PipelineSettings, PostHooks, model_ref

if TYPE_CHECKING:
    from agent.engines.build import Platform
    from agent.engines.detector import Detector
    from agent.engines.trt import TensorRTConfig
    from agent.ota.manager import OtaManager, OtaSlots
    from agent.publish.publisher import Publisher

log = structlog.get_logger(__name__)


def watchdog_ok(
    now_mono: float,
    last_loop_mono: float,
    last_frame_mono: float,
    camera_states: Sequence[str],
    progress_timeout_s: float,
) -> bool:
    """Whether the watchdog may be pinged now (pure).

    The inference thread must be alive (its loop turned recently), and either a frame was
    processed recently or no camera is streaming (all legitimately connecting, stalled or
    in backoff: nothing to process is not a wedge).
    """
    if now_mono - last_loop_mono > progress_timeout_s:
        return False
    if now_mono - last_frame_mono <= progress_timeout_s:
        return True
    return not any(s == "streaming" for s in camera_states)


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class _Counters:
    last_health_mono: float
    cpu: CpuPerFrame
    last_fallback_escalations: int


class Daemon:
    """Owns every component of a running agent; `run()` blocks until stopped."""

    def __init__(
        self, config: AgentConfig, notifier: Notifier | None = None, config_path: Path | None = None
    ) -> None:
        self.cfg = config
        self.config_path = config_path  # re-read on SIGHUP (agent.live_reload)
        self.reloader: Reloader | None = None
        self.config_push: Any = None  # agent.config_push.ConfigPushHandler
        self.boot_id = uuid.uuid4().hex[:16]
        self.topics = Topics(config.device.id, config.mqtt.topic_prefix)
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.started_mono = time.monotonic()
        self.window = FrameWindow()
        self.readers: dict[str, Any] = {}
        self.group: Any = None
        self.publisher: Any = None
        self.pipeline: Pipeline | None = None
        self.fallback: Any = None
        self.tracking: Any = None
        self.home_assistant: Any = None
        self.ota: OtaSlots | None = None
        self._last_states: dict[str, str] = {}
        self._last_dropped = 0

    # -- building blocks -----------------------------------------------------------------
    def _load_detector(self, model_path: Path, manifest: Any) -> Any:
        return load_configured_detector(self.cfg, model_path, manifest)

    def camera_statuses(self) -> list[CameraStatus]:
        out = []
        for cam_id, reader in self.readers.items():
            st = reader.stats()
            out.append(
                CameraStatus(
                    id=cam_id,
                    state=reader.state.value,
                    fps=round(st.fps, 2),
                    last_error=st.last_error,
                )
            )
        return out

    def status(self) -> StatusMessage:
        """The retained `online` status (cameras, model, outbox drops)."""
        model = None
        if self.pipeline is not None:
            model = model_ref(self.pipeline.active_detector().info)
        pstats = self.publisher.stats() if self.publisher is not None else None
        return StatusMessage(
            device=self.cfg.device.id,
            state="online",
            ts=rfc3339_ms(time.time()),
            boot_id=self.boot_id,
            agent_version=__version__,
            model=model,
            cameras=self.camera_statuses(),
            outbox_dropped=pstats.outbox_dropped if pstats is not None else 0,
            outbox_quarantined=pstats.outbox_quarantined if pstats is not None else 0,
            config_sha256=None if self.reloader is None else self.reloader.config_sha256,
            restart_required=[] if self.reloader is None else list(self.reloader.restart_required),
        )

    def push_status(self) -> None:
        """Hand the publisher a fresh status snapshot (it publishes it retained, online); the
        device's description changed (model, cameras): Home Assistant's discovery follows."""
        self.publisher.set_status(self.status())
        if self.home_assistant is not None and self.pipeline is not None:
            self.home_assistant.describe(self.cfg, self.pipeline.active_detector().info.class_names)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        structlog.contextvars.bind_contextvars(device=cfg.device.id)
        cfg.device.state_dir.mkdir(parents=True, exist_ok=True)
        model_path, manifest = initial_model(self.cfg)
        from agent.engines.build import prepare_model

        self.notifier.status(f"preparing model {model_path.name}")
        prepare_model(cfg.model.engine, model_path)  # TensorRT: build or reuse the cached engine
        detector = self._load_detector(model_path, manifest)
        self.publisher = build_publisher(cfg, self.topics, self.boot_id)
        self._build_pipeline(detector)
        if cfg.ota.enabled:
            self.ota = build_ota_slots(
                cfg, self.topics, self.pipeline, self.publisher, self.fallback
            )
            # Subscribed before the first connect, so a command sent the moment the gateway
            # sees this device online is queued, not lost; it is handled once OTA starts.
            self.ota.listen()
        self.config_push = listen_for_config_pushes(self)  # handled in `supervise`
        self.push_status()  # now with the model
        self._home_assistant(detector.info.class_names)
        self._start_threads()
        info = detector.info
        log.info(
            "edge-agent running",
            boot_id=self.boot_id,
            model=info.name,
            version=info.version,
            cameras=list(self.readers),
            broker=f"{cfg.mqtt.host}:{cfg.mqtt.port}",
            ota="on" if cfg.ota.enabled else "off",
            trusted_release_keys=sorted(cfg.trust.release_keys),
            trusted_gateway_keys=sorted(cfg.trust.gateway_keys),
        )
        self.notifier.ready(
            f"running model {info.name} v{info.version}, {len(self.readers)} camera(s)"
        )

    def _home_assistant(self, classes: tuple[str, ...]) -> None:
        """Discovery (retained; again on Home Assistant's birth and on every change of cameras
        or classes, see `push_status`) and the initial zero counts, queued before the pipeline
        runs so a real count never precedes a zero."""
        from agent.homeassistant.build import HomeAssistant

        self.home_assistant = HomeAssistant.of(self.cfg, self.topics, self.publisher)
        if self.home_assistant is not None:
            self.home_assistant.describe(self.cfg, classes)

    def _build_pipeline(self, detector: Detector) -> None:
        """Camera readers, the Florence-2 fallback (its own stream) and the inference loop."""
        from agent.sources.reader import ReaderGroup

        cfg = self.cfg
        assert self.publisher is not None
        group = ReaderGroup.from_configs(cfg.cameras)
        self.group = group
        self.readers = {r.camera_id: r for r in group.readers}
        if cfg.fallback.enabled:
            from agent.fallback.ota_host import florence_startup
            from agent.fallback.worker import Fallback

            submit = self.publisher.submitter(Stream.FLORENCE2)  # its own stream and seq
            model = florence_startup(cfg)  # the Florence-2 OTA slot's model, when it has one
            self.fallback = Fallback(
                cfg.fallback, cfg.device.id, submit, cfg.device.state_dir, model=model
            )
        from agent.tracking.build import build_tracking

        box = LiveConfigBox(LiveConfig.of(cfg))
        self.tracking = build_tracking(cfg, self.topics, self.boot_id, self.publisher, box.get)
        self.reloader = Reloader(self, self.config_path, group, box)
        self.pipeline = Pipeline(
            PipelineSettings(
                device=cfg.device.id, boot_id=self.boot_id, publish_empty=cfg.mqtt.publish_empty
            ),
            feed=group,
            detector=detector,
            submit=self.publisher.submit_detection,
            load_detector=self._load_detector,
            hooks=PostHooks(tracking=self.tracking, fallback=self.fallback, live=box.get),
            window=self.window,
            batch=cfg.batch,
        )
        self.pipeline.on_model_change = lambda _info: self.push_status()

    def _start_threads(self) -> None:
        """Publisher first (it connects), then cameras, fallback, inference, OTA, metrics."""
        assert self.publisher is not None and self.group is not None
        assert self.pipeline is not None
        self.publisher.start()
        self.group.start()
        if self.fallback is not None:
            self.fallback.start()
        self.pipeline.start()
        if self.ota is not None:
            self.ota.start()
        if self.cfg.health.prometheus_port is not None:
            from agent.health.prometheus import PrometheusExporter

            health = self.cfg.health
            PrometheusExporter(self, health.prometheus_addr, health.prometheus_port).start()

    def supervise(self) -> None:
        """Main-thread loop until stop: health, watchdog, status on camera state change.
        Returns as well once every camera is a non-looping `every_frame` file played to its
        end and taken by the loop (`run` then stops in order and exits 0)."""
        assert self.pipeline is not None
        counters = _Counters(time.monotonic(), CpuPerFrame(self.window.total_frames), 0)
        ping_every = min(self.notifier.watchdog_interval() or 1.0, 1.0)
        next_ping = 0.0
        while not self.stop_event.is_set():
            if self.reloader is not None:
                self.reloader.tick()  # SIGHUP: re-read the config between two supervision turns
            if self.config_push is not None:
                self.config_push.tick()  # pushed cameras: check, write, reload, answer
            if self.group is not None and self.group.finished():  # `stop` publishes the rest
                log.info("every camera played its file to the end (every_frame, loop: false)")
                return
            now = time.monotonic()
            states = {cid: r.state.value for cid, r in self.readers.items()}
            self._status_on_change(states)
            if now >= next_ping:
                next_ping = now + ping_every
                if self.tracking is not None:  # events of cameras without frames expire
                    self.tracking.tick(time.time())
                if watchdog_ok(
                    now,
                    self.pipeline.last_loop_mono,
                    self.pipeline.last_frame_mono,
                    list(states.values()),
                    self.cfg.health.progress_timeout_s,
                ):
                    self.notifier.watchdog()
                else:
                    log.warning("pipeline made no progress: withholding watchdog ping")
            if now - counters.last_health_mono >= self.cfg.health.interval_s:
                msg = health_message(self, counters)
                self.publisher.publish_health(dump_payload(msg))
                self.notifier.status(
                    f"{msg.fps:.1f} fps, p50 {msg.latency_ms_p50 or 0:.1f} ms, "
                    f"outbox {msg.outbox_depth}"
                )
            self.stop_event.wait(0.1)

    def _status_on_change(self, states: dict[str, str]) -> None:
        """Push a new status snapshot when a camera changed state or the outbox dropped more."""
        dropped = self.publisher.stats().outbox_dropped
        if states == self._last_states and dropped == self._last_dropped:
            return
        if states != self._last_states:
            log.info("camera states", **states)
        self._last_states, self._last_dropped = states, dropped
        self.push_status()

    def stop(self) -> None:
        """Orderly stop within `stop_timeout_s`: sources, inference, fallback, OTA, publisher."""
        deadline = time.monotonic() + self.cfg.stop_timeout_s
        self.notifier.stopping()
        log.info("stopping")

        def left() -> float:
            return max(deadline - time.monotonic(), 0.1)

        if self.group is not None:
            self.group.stop(timeout=min(left(), 2.0))
        # the pipeline owns the detectors: stopping it closes the active one
        if self.pipeline is not None and not self.pipeline.stop(timeout=min(left(), 5.0)):
            log.warning("inference thread did not stop in time")
        elif self.tracking is not None:
            self.tracking.close()  # one `end` (stop) per open event, before the publisher drains
        if self.ota is not None:
            self.ota.stop(timeout=min(left(), 2.0))
        if self.fallback is not None:
            self.fallback.stop(timeout=min(left(), 2.0))
        if self.home_assistant is not None:
            self.home_assistant.stop(timeout=min(left(), 1.0))
        if self.publisher is not None:
            self.publisher.stop(timeout=left())
        self.notifier.close()
        log.info("stopped")


PUBLISHER_COUNTS = (
    "outbox_depth",
    "outbox_bytes",
    "outbox_dropped",
    "outbox_quarantined",
    "acks_refused",
)
"""The publisher's counters (`PublisherStats`) the health message carries under their names."""


def health_message(daemon: Daemon, counters: _Counters) -> HealthMessage:
    """The periodic health message; moves `counters` on to now."""
    now = time.monotonic()
    assert daemon.pipeline is not None and daemon.publisher is not None
    summary = daemon.window.summary(counters.last_health_mono, now)
    pstats = daemon.publisher.stats()
    cpu = counters.cpu.sample(daemon.window.total_frames)
    frames_dropped = sum(r.stats().dropped for r in daemon.readers.values())
    fb_state, fb_rate = "disabled", 0.0
    if daemon.fallback is not None:
        fst = daemon.fallback.stats()
        fb_state = fst.state
        span_min = max(now - counters.last_health_mono, 1e-6) / 60.0
        fb_rate = max(fst.escalations - counters.last_fallback_escalations, 0) / span_min
        counters.last_fallback_escalations = fst.escalations
    msg = HealthMessage(
        device=daemon.cfg.device.id,
        boot_id=daemon.boot_id,
        ts=rfc3339_ms(time.time()),
        uptime_s=round(now - daemon.started_mono, 3),
        fps=round(summary.fps, 3),
        latency_ms_p50=None if summary.latency_p50_ms is None else round(summary.latency_p50_ms, 3),
        latency_ms_p99=None if summary.latency_p99_ms is None else round(summary.latency_p99_ms, 3),
        frames_processed=daemon.window.total_frames,
        frames_dropped=frames_dropped,
        publish_queue_depth=pstats.queue_depth,
        publish_queue_dropped=pstats.queue_dropped + daemon.pipeline.submit_refused,
        publish_rejected=pstats.rejected,
        **{name: getattr(pstats, name) for name in PUBLISHER_COUNTS},
        fallback_rate_per_min=round(fb_rate, 3),
        fallback_state=fb_state,
        rss_mb=round(rss_mb(), 1),
        cpu_ms_per_frame=None if cpu is None else round(cpu, 3),
        cameras=daemon.camera_statuses(),
    )
    counters.last_health_mono = now
    return msg


def load_configured_detector(cfg: AgentConfig, model_path: Path, manifest: Any) -> Any:
    """A detector for `model_path` with the configured engine and thresholds."""
    from agent.engines.detector import load_detector
    from agent.engines.ort import OnnxRuntimeConfig

    m = cfg.model
    engine = m.engine
    if isinstance(engine, OnnxRuntimeConfig) and engine.expected_fps is None:
        from agent.sources.rates import cameras_fps  # spin: auto weighs it against the engine

        engine = engine.model_copy(update={"expected_fps": cameras_fps(cfg.cameras)})
    return load_detector(
        model_path,
        engine,
        conf_threshold=m.conf_threshold,
        iou_threshold=m.iou_threshold,
        max_detections=m.max_detections,
        manifest=manifest,
    )


def initial_model(cfg: AgentConfig) -> tuple[Path, Any]:
    """The model to load at start: the OTA store's settled choice, else the configured one."""
    from agent.engines.model_loading import load_manifest

    default_manifest = load_manifest(cfg.model.manifest) if cfg.model.manifest else None
    if cfg.ota.enabled:
        from agent.ota.startup import resolve_startup
        from agent.ota.store import CrashLoopLimit, ModelStore

        store = ModelStore(cfg.device.state_dir / "models")
        ota = cfg.ota
        limit = CrashLoopLimit(ota.committed_crashes, ota.committed_crash_window_s)
        return resolve_startup(store, cfg.model.path, default_manifest, limit)
    return cfg.model.path, default_manifest


def build_ota_slots(
    cfg: AgentConfig, topics: Topics, pipeline: Pipeline, publisher: Publisher, fallback: Any
) -> OtaSlots:
    """The detector's OTA manager, and the Florence-2 fallback's when its slot is on."""
    from agent.ota.manager import OtaSlots

    managers = [build_ota_manager(cfg, topics, pipeline, publisher)]
    if fallback is not None and fallback.model.model_dir is not None:
        from agent.fallback.ota_host import build_florence_ota, slot_enabled

        if slot_enabled(cfg):
            managers.append(build_florence_ota(cfg, topics, publisher, fallback, pipeline))
    return OtaSlots(managers)


def build_ota_manager(
    cfg: AgentConfig, topics: Topics, pipeline: Pipeline, publisher: Publisher
) -> OtaManager:
    """The OTA manager for this device's engine: formats it runs, TensorRT build hook,
    platform for prebuilt engines' compat."""
    from agent.engines.build import needs_build, prepare_model
    from agent.engines.trt import TensorRTConfig
    from agent.ota.manager import OtaManager
    from agent.ota.sandbox import CandidateSpec
    from agent.ota.slot import ModelSlot

    engine_cfg = cfg.model.engine
    build = None
    if needs_build(engine_cfg, "onnx"):
        build = lambda path, _manifest: prepare_model(engine_cfg, path)  # noqa: E731
    formats = frozenset({"onnx"})
    platform = None
    if isinstance(engine_cfg, TensorRTConfig):
        formats = frozenset({"onnx", "engine"})
        platform = _probe_platform(engine_cfg)
    slot = ModelSlot(
        runnable_formats=formats,
        platform=platform,
        build=build,
        candidate=CandidateSpec(
            engine=engine_cfg,
            conf_threshold=cfg.model.conf_threshold,
            iou_threshold=cfg.model.iou_threshold,
            max_detections=cfg.model.max_detections,
        ),
    )
    return OtaManager(
        cfg.ota, cfg.trust, topics, cfg.device.state_dir, pipeline, publisher, slot=slot
    )


def listen_for_config_pushes(daemon: Daemon) -> Any:
    """The handler of camera config pushed from the gateway, subscribed."""
    from agent.config_push import ConfigPushHandler

    cfg = daemon.cfg
    handler = ConfigPushHandler(
        cfg.device.id,
        dict(cfg.trust.gateway_keys),
        cfg.device.state_dir,
        daemon.topics,
        daemon.publisher,
        daemon.reloader,  # type: ignore[arg-type]
    )
    handler.listen()
    return handler


def build_publisher(cfg: AgentConfig, topics: Topics, boot_id: str) -> Publisher:
    """The publisher of `cfg`, with the gateway keys that verify signed acks."""
    from agent.publish.publisher import Publisher

    # The lead re-points the keys at the `trust:` section when merging.
    keys = cfg.trust.gateway_keys
    return Publisher(cfg.mqtt, cfg.outbox, topics, cfg.device.state_dir, boot_id, keys)


def _probe_platform(engine_cfg: TensorRTConfig) -> Platform | None:
    """This device's TensorRT and GPU for the OTA compat check; None (logged) if unknown."""
    from agent.engines.base import EngineError
    from agent.engines.build import probe_platform

    try:
        return probe_platform(engine_cfg.device)
    except EngineError as exc:
        log.error("cannot probe TensorRT/GPU; engines needing compat are refused", error=str(exc))
        return None


def install_signal_handlers(
    stop: threading.Event, reload: Callable[[], None] | None = None
) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal received", signal=signal.Signals(signum).name)
        stop.set()

    def on_hup(_signum: int, _frame: object) -> None:
        log.info("signal received", signal="SIGHUP")
        if reload is not None:
            reload()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, on_hup)  # `systemctl reload`: never the default (terminate)


class StartupError(Exception):
    """A subsystem failed while the daemon started; `edge-agent run` prints one line, exits 1."""

    def __init__(self, subsystem: str, cause: BaseException) -> None:
        self.subsystem = subsystem
        super().__init__(f"{subsystem}: {type(cause).__name__}: {cause}")


def subsystem_of(err: BaseException) -> str:
    """The agent package where `err` was raised (`publish`, `sources`, `ota`...), from its
    traceback's innermost frame inside `agent` outside the daemon itself."""
    found = "daemon"
    tb = err.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        parts = module.split(".")
        if parts[0] == "agent" and len(parts) > 1 and parts[1] != "daemon":
            found = parts[1]
        tb = tb.tb_next
    return found


def run(
    config: AgentConfig,
    on_ready: Callable[[Daemon], None] | None = None,
    config_path: Path | None = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (main thread only); SIGHUP re-reads `config_path`.
    A failure while starting raises StartupError naming the subsystem."""
    daemon = Daemon(config, config_path=config_path)
    install_signal_handlers(
        daemon.stop_event, lambda: daemon.reloader is not None and daemon.reloader.request()
    )
    try:
        try:
            daemon.start()
        except Exception as err:  # any subsystem: reported in one line by `run_command`
            raise StartupError(subsystem_of(err), err) from err
        if on_ready is not None:
            on_ready(daemon)
        daemon.supervise()
    finally:
        daemon.stop()


@click.command("run")
@config_option("Agent config file (YAML).")
def run_command(config_path: Path) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        echo_problems(f"{config_path}: invalid config:", err.problems)
        raise SystemExit(1) from None
    configure_logging(cfg.logging.format, cfg.logging.level)
    try:
        run(cfg, config_path=config_path)
    except StartupError as err:
        log.error("cannot start", subsystem=err.subsystem, error=str(err.__cause__))
        click.echo(f"edge-agent: cannot start: {err}", err=True)
        raise SystemExit(1) from None
