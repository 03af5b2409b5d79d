"""The daemon as a real subprocess on the demo clip and model, against a real Mosquitto."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from agent.contracts.payloads import DetectionMessage, HealthMessage, StatusMessage
from agent.engines.model_loading import file_sha256
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.daemon import DEMO_CLIP, DEMO_MODEL, DaemonProcess, demo_config
from tests.helpers.models import classifier, slow_yolo_taking
from tests.helpers.mqtt import Recorder, retained
from tests.helpers.proxy import TcpProxy

DEV = "dev-test"
STATUS = f"edge/{DEV}/status"


def detections(rec: Recorder, camera: str = "cam-a") -> list[DetectionMessage]:
    topic = f"edge/{DEV}/cameras/{camera}/detections"
    return [DetectionMessage.model_validate_json(m.payload) for m in rec.on(topic)]


def n_detections(n: int, camera: str = "cam-a"):  # noqa: ANN201
    topic = f"edge/{DEV}/cameras/{camera}/detections"
    return lambda msgs: sum(m.topic == topic for m in msgs) >= n


def status_of(port: int) -> StatusMessage | None:
    raw = retained(port, STATUS)
    return None if raw is None else StatusMessage.model_validate_json(raw)


@pytest.fixture
def recorder(mosquitto: Mosquitto):  # noqa: ANN201
    rec = Recorder(mosquitto.port, [f"edge/{DEV}/#"])
    yield rec
    rec.close()


def test_detections_validate_and_seq_grows_by_one(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """Messages validate against the models, seq grows by exactly 1, status is retained online."""
    with DaemonProcess(tmp_path / "d", demo_config(tmp_path / "state", mosquitto.port)):
        recorder.wait_for(n_detections(12), timeout=60)
        status = status_of(mosquitto.port)
        recorder.wait_for(lambda ms: any(m.topic == f"edge/{DEV}/health" for m in ms), timeout=10)
    msgs = detections(recorder)
    assert [m.seq for m in msgs] == list(range(len(msgs)))
    assert len({m.boot_id for m in msgs}) == 1
    sha = file_sha256(DEMO_MODEL)
    assert all(m.model.sha256 == sha and m.source == "yolo" for m in msgs)
    assert all(m.frame.width == 768 and m.frame.height == 576 for m in msgs)
    assert sum(len(m.detections) for m in msgs) > 0
    for m in msgs:
        for d in m.detections:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 <= x2 <= 768 and 0 <= y1 <= y2 <= 576
    assert status is not None and status.state == "online" and status.model is not None
    assert status.model.sha256 == sha
    assert [c.id for c in status.cameras] == ["cam-a"]
    health = [
        HealthMessage.model_validate_json(m.payload) for m in recorder.on(f"edge/{DEV}/health")
    ]
    assert health and health[-1].frames_processed > 0


def test_sigterm_stops_in_order_and_leaves_offline(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """SIGTERM: exit 0 within the stop timeout and an explicit retained offline status."""
    cfg = demo_config(tmp_path / "state", mosquitto.port)
    with DaemonProcess(tmp_path / "d", cfg) as d:
        recorder.wait_for(n_detections(3), timeout=60)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.wait(timeout=cfg["stop_timeout_s"] + 2)
        elapsed = time.monotonic() - t0
    assert code == 0, d.log()[-3000:]
    assert elapsed <= cfg["stop_timeout_s"]
    status = status_of(mosquitto.port)
    assert status is not None and status.state == "offline"


def test_kill9_leaves_offline_through_the_last_will(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """kill -9: the broker publishes the retained offline last will after the keepalive."""
    with DaemonProcess(tmp_path / "d", demo_config(tmp_path / "state", mosquitto.port)) as d:
        recorder.wait_for(n_detections(3), timeout=60)
        assert status_of(mosquitto.port).state == "online"  # type: ignore[union-attr]
        d.kill()
        recorder.wait_for(
            lambda ms: any(
                m.topic == STATUS and json.loads(m.payload)["state"] == "offline" for m in ms
            ),
            timeout=15,
        )
    status = status_of(mosquitto.port)
    assert status is not None and status.state == "offline"


class NotifySocket:
    """A real unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.log: list[tuple[float, str]] = []

    def collect(self, seconds: float, until: str | None = None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            for line in data.splitlines():
                self.log.append((time.monotonic(), line))
                if until is not None and line == until:
                    return

    def times(self, line: str) -> list[float]:
        return [t for t, text in self.log if text == line]

    def close(self) -> None:
        self.sock.close()


def max_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=float("inf"))


def test_sd_notify_ready_watchdog_and_stopping(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """READY, then WATCHDOG about every second while frames flow, then STOPPING on SIGTERM."""
    ns = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(ns.path), "WATCHDOG_USEC": "2000000"}
    try:
        with DaemonProcess(
            tmp_path / "d", demo_config(tmp_path / "state", mosquitto.port), env=env
        ) as d:
            ns.collect(60, until="READY=1")
            assert ns.times("READY=1"), d.log()[-2000:]
            ns.collect(4)
            pings = ns.times("WATCHDOG=1")
            assert len(pings) >= 3 and max_gap(pings) <= 1.6
            d.signal(signal.SIGTERM)
            ns.collect(10, until="STOPPING=1")
            assert d.wait(10) == 0
        assert ns.times("STOPPING=1")
        assert any(line.startswith("STATUS=") for _t, line in ns.log)
    finally:
        ns.close()


def test_watchdog_pings_stop_when_the_pipeline_is_wedged(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """With inference stuck for seconds per frame, the daemon withholds watchdog pings."""
    model = slow_yolo_taking(tmp_path / "slow.onnx", 6.0)  # a frame takes 6 s on one thread
    ns = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(ns.path), "WATCHDOG_USEC": "2000000"}
    cfg = demo_config(
        tmp_path / "state",
        mosquitto.port,
        model={
            "path": str(model),
            "manifest": None,
            "engine": {"type": "onnxruntime", "threads": 1, "warmup_runs": 0},
        },
        health={"interval_s": 1.0, "progress_timeout_s": 1.0},
    )
    try:
        with DaemonProcess(tmp_path / "d", cfg, env=env) as d:
            ns.collect(60, until="READY=1")
            assert ns.times("READY=1"), d.log()[-2000:]
            ready = ns.times("READY=1")[0]
            ns.collect(6)
            pings = [t for t in ns.times("WATCHDOG=1") if t > ready]
            # a wedge shows as a silence far longer than the 1 s ping period
            assert max_gap([ready, *pings, time.monotonic()]) >= 2.5, pings
            assert "withholding watchdog ping" in d.log()
    finally:
        ns.close()


@pytest.mark.parametrize(
    "bad_source",
    [
        {"type": "file", "path": "/nonexistent/clip.mp4"},  # missing video
        "corrupt",  # a file of garbage bytes
        "rtsp",  # an RTSP URL where nothing answers
    ],
    ids=["missing-file", "corrupt-file", "rtsp-no-answer"],
)
def test_a_dead_camera_backs_off_while_another_keeps_publishing(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, bad_source: object
) -> None:
    """A dead source goes to backoff with its error in status; the good camera keeps going."""
    if bad_source == "corrupt":
        junk = tmp_path / "junk.mp4"
        junk.write_bytes(DEMO_CLIP.read_bytes()[:0] + b"\x00garbage" * 5000)
        bad_source = {"type": "file", "path": str(junk)}
    elif bad_source == "rtsp":
        bad_source = {
            "type": "rtsp",
            "url": f"rtsp://127.0.0.1:{free_port()}/stream",
            "open_timeout_s": 1.0,
            "read_timeout_s": 1.0,
        }
    cams = [
        {"id": "cam-a", "source": {"type": "file", "path": str(DEMO_CLIP)}},
        {"id": "cam-b", "source": bad_source, "backoff_min_s": 0.5, "backoff_max_s": 2.0},
    ]
    with DaemonProcess(
        tmp_path / "d", demo_config(tmp_path / "state", mosquitto.port, cameras=cams)
    ) as d:
        recorder.wait_for(n_detections(10), timeout=60)
        deadline = time.monotonic() + 20
        cam_b = None
        while time.monotonic() < deadline:
            st = status_of(mosquitto.port)
            cam_b = next((c for c in st.cameras if c.id == "cam-b"), None) if st else None
            if cam_b is not None and cam_b.state == "backoff" and cam_b.last_error:
                break
            time.sleep(0.3)
        assert cam_b is not None and cam_b.state == "backoff", d.log()[-2000:]
        assert cam_b.last_error
        before = len(detections(recorder))
        recorder.wait_for(n_detections(before + 5), timeout=30)
    assert detections(recorder, "cam-b") == []


@pytest.mark.parametrize(
    ("make_model", "expected"),
    [
        (lambda p: p / "missing.onnx", "not found"),  # missing file
        (
            lambda p: (
                (p / "trunc.onnx").write_bytes(DEMO_MODEL.read_bytes()[:50_000])
                and p / "trunc.onnx"
            ),
            "onnx",
        ),  # corrupt
        (lambda p: classifier(p / "cls.onnx"), "[1, 1000]"),  # not a detector
    ],
    ids=["missing", "truncated", "classifier"],
)
def test_bad_models_exit_1_with_a_clear_error(tmp_path: Path, make_model, expected: str) -> None:  # noqa: ANN001
    """A missing, corrupt or non-detector model stops the daemon at start with exit 1."""
    model = make_model(tmp_path)
    cfg = demo_config(
        tmp_path / "state",
        free_port(),
        model={"path": str(model), "manifest": None, "engine": {"type": "onnxruntime"}},
    )
    d = DaemonProcess(tmp_path / "d", cfg).start()
    try:
        code = d.wait(60)
    finally:
        d.kill()
    assert code == 1
    assert expected.lower() in d.log().lower(), d.log()[-2000:]
    assert "Traceback" not in d.log()


def test_a_missing_execution_provider_is_refused(tmp_path: Path) -> None:
    """Requesting CUDA where it is absent fails clearly unless fallback is allowed."""
    cfg = demo_config(
        tmp_path / "state",
        free_port(),
        model={
            "path": str(DEMO_MODEL),
            "manifest": None,
            "engine": {"type": "onnxruntime", "providers": ["CUDAExecutionProvider"]},
        },
    )
    d = DaemonProcess(tmp_path / "d", cfg).start()
    try:
        code = d.wait(60)
    finally:
        d.kill()
    assert code == 1
    assert "CUDAExecutionProvider" in d.log()


def test_invalid_config_exits_1_listing_problems(tmp_path: Path) -> None:
    """`run` with unknown keys and a bad id exits 1 and names each field."""
    cfg = demo_config(tmp_path / "state", free_port(), device="Bad/Id")
    cfg["surprise"] = True
    d = DaemonProcess(tmp_path / "d", cfg).start()
    try:
        code = d.wait(30)
    finally:
        d.kill()
    assert code == 1
    assert "device.id" in d.log() and "surprise" in d.log()


def test_unreachable_broker_keeps_running_and_delivers_later(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    """With the broker unreachable the daemon keeps detecting; all arrives once it is back."""
    with TcpProxy(mosquitto.port, start_up=False) as proxy:  # connections refused
        with DaemonProcess(tmp_path / "d", demo_config(tmp_path / "state", proxy.port)) as d:
            time.sleep(4)
            assert d.proc is not None and d.proc.poll() is None, d.log()[-2000:]
            assert detections(recorder) == []
            proxy.up()
            recorder.wait_for(n_detections(30), timeout=60)
    msgs = detections(recorder)
    seqs = sorted({m.seq for m in msgs})
    assert seqs[0] == 0 and seqs == list(range(len(seqs)))


def _occupied_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(
    ("breakage", "subsystem"),
    [
        ("state_dir_is_a_file", "daemon"),  # mkdir of the state dir fails
        ("metrics_port_taken", "health"),  # the Prometheus server cannot bind
    ],
)
def test_startup_errors_exit_1_with_one_line(tmp_path: Path, breakage: str, subsystem: str) -> None:
    """A subsystem failing at start ends the daemon with exit 1 and one line, no traceback."""
    holder = None
    cfg = demo_config(tmp_path / "state", free_port())
    if breakage == "state_dir_is_a_file":
        (tmp_path / "state").write_text("not a directory")
    else:
        holder, port = _occupied_port()
        cfg["health"] = {**cfg["health"], "prometheus_port": port}
    d = DaemonProcess(tmp_path / "d", cfg).start()
    try:
        code = d.wait(60)
    finally:
        d.kill()
        if holder is not None:
            holder.close()
    log = d.log()
    assert code == 1, log[-2000:]
    assert "Traceback" not in log, log[-3000:]
    lines = [ln for ln in log.splitlines() if ln.startswith("edge-agent: cannot start: ")]
    assert len(lines) == 1 and lines[0].split(": ")[2] == subsystem, log[-2000:]
