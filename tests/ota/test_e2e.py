"""OTA end to end: `edge-agent run` as a real process, a real Mosquitto, a loopback artifact
server and real signatures - hot swap under a running stream, kill -9 at each stage, rollback."""

from __future__ import annotations

import hashlib
import json
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaCommand, OtaState, OtaStateMessage, Reason
from agent.contracts.payloads import DetectionMessage
from agent.ota.store import ModelStore
from tests.helpers.broker import Mosquitto
from tests.helpers.daemon import DaemonProcess, demo_config
from tests.helpers.mqtt import Received, Recorder
from tests.ota import models as variants
from tests.ota.artifact_server import ArtifactServer
from tests.ota.conftest import Forge

DEV = "dev-test"
DET = f"edge/{DEV}/cameras/cam-a/detections"
STATE = f"edge/{DEV}/ota/state"
CMD = f"edge/{DEV}/ota/command"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, demo_model: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("zoo-e2e")
    return {
        "v2": variants.retagged(demo_model, d / "v2.onnx"),
        "boosted": variants.boosted(demo_model, d / "boosted.onnx"),
        "silent": variants.silent(demo_model, d / "silent.onnx"),
    }


@pytest.fixture
def server() -> Iterator[ArtifactServer]:
    with ArtifactServer() as s:
        yield s


@pytest.fixture
def recorder(mosquitto: Mosquitto) -> Iterator[Recorder]:
    rec = Recorder(mosquitto.port, [f"edge/{DEV}/#"])
    yield rec
    rec.close()


def config(tmp_path: Path, port: int, forge: Forge, **ota: Any) -> dict[str, Any]:
    keys = forge.keys()
    section = {
        "enabled": True,
        "probation_s": 2.0,
        "probation_min_frames": 3,
        "read_timeout_s": 5.0,
        "retry_backoff_s": 0.2,
        "disk_margin_bytes": 0,
        "progress_interval_s": 0.2,
        "validation_frames": 3,
        "latency_budget_ms": 5000.0,
    }
    section.update(ota)
    return demo_config(tmp_path / "state", port, ota=section, trust=keys)


def send(port: int, cmd: OtaCommand) -> None:
    mqtt_publish.single(
        CMD, cmd.model_dump_json(by_alias=True), qos=1, hostname="127.0.0.1", port=port
    )


def states(rec: Recorder, command_id: str) -> list[OtaStateMessage]:
    out = [OtaStateMessage.model_validate_json(m.payload) for m in rec.on(STATE)]
    return [s for s in out if s.command_id == command_id]


def terminal(rec: Recorder, command_id: str) -> set[tuple[OtaState, Reason | None]]:
    return {(s.state, s.reason) for s in states(rec, command_id) if s.state.terminal}


def wait_state(rec: Recorder, command_id: str, wanted: set[OtaState], timeout: float) -> None:
    def seen(msgs: list[Received]) -> bool:
        for m in msgs:
            if m.topic == STATE:
                s = OtaStateMessage.model_validate_json(m.payload)
                if s.command_id == command_id and s.state in wanted:
                    return True
        return False

    rec.wait_for(seen, timeout)


def detections(rec: Recorder) -> list[tuple[float, DetectionMessage]]:
    return [(m.at, DetectionMessage.model_validate_json(m.payload)) for m in rec.on(DET)]


def n_detections_after(rec: Recorder, start: int, n: int):  # noqa: ANN201
    return lambda msgs: sum(m.topic == DET for m in msgs) >= start + n


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hot_swap_under_stream_loses_no_frame(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    server: ArtifactServer,
    forge: Forge,
    zoo: dict[str, Path],
    demo_manifest: Manifest,
    record_property: Any,
) -> None:
    """Every seq is present across the swap and the version changes from one frame to the next."""
    m2 = variants.manifest_for(zoo["v2"], demo_manifest, 2)
    url = server.add(m2.sha256, zoo["v2"].read_bytes())
    with DaemonProcess(tmp_path / "d", config(tmp_path, mosquitto.port, forge)) as d:
        recorder.wait_for(n_detections_after(recorder, 0, 5), timeout=60)
        send(mosquitto.port, forge.command(m2, url=url, device=DEV))
        wait_state(
            recorder,
            "cmd-1",
            {OtaState.COMMITTED, OtaState.FAILED, OtaState.ROLLED_BACK, OtaState.REJECTED},
            60,
        )
        done = len(recorder.on(DET))
        recorder.wait_for(n_detections_after(recorder, done, 5), timeout=30)
        log = d.log()
    assert terminal(recorder, "cmd-1") == {(OtaState.COMMITTED, None)}, log[-3000:]
    dets = detections(recorder)
    seqs = [m.seq for _, m in dets]
    assert seqs == list(range(len(seqs)))
    versions = [m.model.version for _, m in dets]
    switch = versions.index(2)
    assert set(versions[:switch]) == {1} and set(versions[switch:]) == {2}
    assert dets[switch][1].model.sha256 == m2.sha256
    gaps = [b[0] - a[0] for a, b in zip(dets, dets[1:], strict=False)]
    normal = sorted(gaps)[len(gaps) // 2]
    swap_gap = max(gaps[max(0, switch - 2) : switch + 1])
    record_property("normal_interval_ms", round(normal * 1e3, 1))
    record_property("swap_gap_ms", round(swap_gap * 1e3, 1))
    record_property("longest_gap_ms", round(max(gaps) * 1e3, 1))


STAGES = [
    # kill while the artifact streams in (slow server)
    ("downloading", 0.0),
    # kill as soon as the device reports verifying
    ("verifying", 0.0),
    # kill as soon as it reports loading
    ("loading", 0.0),
    # kill as soon as it reports validating
    ("validating", 0.0),
    # kill right after the swap
    ("active", 0.0),
    # kill in the middle of probation
    ("active", 1.5),
]


@pytest.mark.parametrize(("stage", "delay"), STAGES, ids=[f"{s}+{d}s" for s, d in STAGES])
def test_kill_at_stage_resolves_to_one_terminal_state(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    server: ArtifactServer,
    forge: Forge,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
    stage: str,
    delay: float,
    record_property: Any,
) -> None:
    """kill -9 at a stage, restart: old or new model with matching sha, one terminal state,
    no partial file."""
    m2 = variants.manifest_for(zoo["v2"], demo_manifest, 2)
    rate = 2e6 if stage == "downloading" else 50e6
    url = server.add(m2.sha256, zoo["v2"].read_bytes(), "slow", rate=rate)
    cfg = config(tmp_path, mosquitto.port, forge, probation_s=4.0)
    with DaemonProcess(tmp_path / "d", cfg) as d:
        recorder.wait_for(n_detections_after(recorder, 0, 2), timeout=60)
        send(mosquitto.port, forge.command(m2, url=url, device=DEV))
        wait_state(recorder, "cmd-1", {OtaState(stage)}, 60)
        time.sleep(delay)
        d.kill()
    seen_before = [s.state.value for s in states(recorder, "cmd-1")]
    old_boots = {m.boot_id for _, m in detections(recorder)}
    with DaemonProcess(tmp_path / "d2", cfg) as d2:
        recorder.wait_for(
            lambda _m: sum(m.boot_id not in old_boots for _, m in detections(recorder)) >= 3,
            timeout=60,
        )
        recorder.wait_for(lambda _m: bool(terminal(recorder, "cmd-1")), timeout=30)
        time.sleep(0.5)
        log = d2.log()
    ends = terminal(recorder, "cmd-1")
    record_property("last_state_before_kill", seen_before[-1])
    record_property("terminal", sorted(f"{s.value}:{r.value if r else ''}" for s, r in ends))
    assert len(ends) == 1, (seen_before, ends)
    after = [m for _, m in detections(recorder) if m.boot_id not in old_boots]
    running = {m.model.sha256 for m in after}
    assert len(running) == 1, running
    ((state, reason),) = ends
    if state is OtaState.COMMITTED:
        assert running == {sha(zoo["v2"])}
    else:
        assert running == {sha(demo_model)}, (state, reason, log[-2000:])
    store = ModelStore(tmp_path / "state" / "models")
    assert list(store.staging_dir.iterdir()) == []
    assert [p for p in store.root.rglob("*.tmp-*")] == []
    pointer = store.read_pointer()
    on_disk = {p for p in store.root.glob("*/*") if p.is_dir()}
    referenced = {Path(r.path).parent for r in (pointer.active, pointer.previous) if r}
    assert on_disk <= referenced
    for r in (pointer.active, pointer.previous):
        if r is not None and Path(r.path).exists():
            assert sha(Path(r.path)) == r.sha256


def test_probation_failure_rolls_back_in_daemon(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    server: ArtifactServer,
    forge: Forge,
    zoo: dict[str, Path],
    demo_manifest: Manifest,
) -> None:
    """A model whose detection rate collapses is rolled back; messages name the old model again."""
    base = variants.manifest_for(zoo["boosted"], demo_manifest, 1)
    base_file = tmp_path / "boosted.json"
    base_file.write_text(json.dumps(base.model_dump(mode="json", by_alias=True)))
    m2 = variants.manifest_for(zoo["silent"], demo_manifest, 2)
    url = server.add(m2.sha256, zoo["silent"].read_bytes())
    cfg = config(tmp_path, mosquitto.port, forge, probation_s=3.0, baseline_window_s=60.0)
    cfg["model"] = {**cfg["model"], "path": str(zoo["boosted"]), "manifest": str(base_file)}
    with DaemonProcess(tmp_path / "d", cfg) as d:
        recorder.wait_for(n_detections_after(recorder, 0, 5), timeout=60)
        send(mosquitto.port, forge.command(m2, url=url, device=DEV))
        wait_state(
            recorder, "cmd-1", {OtaState.ROLLED_BACK, OtaState.COMMITTED, OtaState.FAILED}, 60
        )
        done = len(recorder.on(DET))
        recorder.wait_for(n_detections_after(recorder, done, 3), timeout=30)
        log = d.log()
    assert terminal(recorder, "cmd-1") == {(OtaState.ROLLED_BACK, Reason.PROBATION_FAILED)}, log[
        -3000:
    ]
    dets = [m for _, m in detections(recorder)]
    assert [m.seq for m in dets] == list(range(len(dets)))
    assert {m.model.version for m in dets} == {1, 2}
    assert dets[-1].model.sha256 == base.sha256


def test_bad_commands_on_the_wire_leave_model_untouched(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    forge: Forge,
    demo_manifest: Manifest,
    demo_model: Path,
) -> None:
    """Malformed, oversized, path-tricked and forged payloads each get their reason on ota/state."""
    m2 = demo_manifest.model_copy(update={"version": 2})
    payloads = [
        (b"{nope", Reason.MALFORMED),
        (b"x" * (70 * 1024), Reason.PAYLOAD_TOO_LARGE),
        (
            forge.command(m2, device=DEV, key=forge.stranger)
            .model_dump_json(by_alias=True)
            .encode(),
            Reason.UNKNOWN_KEY,
        ),
        (
            forge.command(m2, device="dev-other").model_dump_json(by_alias=True).encode(),
            Reason.WRONG_DEVICE,
        ),
        (
            forge.command(m2, device=DEV)
            .model_dump_json(by_alias=True)
            .replace('"name":"demo-yolov8n"', '"name":"../../etc"')
            .encode(),
            Reason.PATH_TRAVERSAL,
        ),
    ]
    with DaemonProcess(tmp_path / "d", config(tmp_path, mosquitto.port, forge)):
        recorder.wait_for(n_detections_after(recorder, 0, 2), timeout=60)
        for payload, _ in payloads:
            mqtt_publish.single(CMD, payload, qos=1, hostname="127.0.0.1", port=mosquitto.port)
        recorder.wait_for(
            lambda msgs: (
                sum(m.topic == STATE and b'"rejected"' in m.payload for m in msgs) >= len(payloads)
            ),
            timeout=30,
        )
        n = len(recorder.on(DET))
        recorder.wait_for(n_detections_after(recorder, n, 2), timeout=30)
    got = [OtaStateMessage.model_validate_json(m.payload) for m in recorder.on(STATE)]
    reasons = [s.reason for s in got if s.state is OtaState.REJECTED]
    assert reasons == [r for _, r in payloads]
    assert {m.model.sha256 for _, m in detections(recorder)} == {sha(demo_model)}


def test_command_sent_the_instant_the_device_is_online_is_answered(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    server: ArtifactServer,
    forge: Forge,
    zoo: dict[str, Path],
    demo_manifest: Manifest,
) -> None:
    """A gateway that deploys as soon as it sees the retained `online` status (as ours does
    after a device starts) is not lost to a device that has not subscribed yet."""
    import paho.mqtt.client as mqtt

    m2 = variants.manifest_for(zoo["v2"], demo_manifest, 2)
    url = server.add(m2.sha256, zoo["v2"].read_bytes())
    payload = forge.command(m2, url=url, device=DEV).model_dump_json(by_alias=True)
    sent = threading.Event()

    def on_status(client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if not sent.is_set() and json.loads(msg.payload).get("state") == "online":
            client.publish(CMD, payload, qos=1)  # from the callback: no delay at all
            sent.set()

    gateway = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    gateway.on_message = on_status
    gateway.connect("127.0.0.1", mosquitto.port)
    gateway.subscribe(f"edge/{DEV}/status", qos=1)
    gateway.loop_start()
    try:
        with DaemonProcess(tmp_path / "d", config(tmp_path, mosquitto.port, forge)) as d:
            assert sent.wait(60), d.log()[-2000:]
            wait_state(recorder, "cmd-1", {OtaState.DOWNLOADING, OtaState.REJECTED}, 30)
            wait_state(recorder, "cmd-1", {OtaState.COMMITTED, OtaState.FAILED}, 60)
            log = d.log()
    finally:
        gateway.loop_stop()
        gateway.disconnect()
    assert terminal(recorder, "cmd-1") == {(OtaState.COMMITTED, None)}, log[-3000:]


# -- untrusted models, damaged state, crash loops (issue 19) --------------------------------
@contextmanager
def address_space_cap(gib: float) -> Iterator[None]:
    """Processes started inside inherit a soft RLIMIT_AS of `gib` GiB (a safety net so a
    regression cannot take this machine's memory; the device itself has no such cap)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (int(gib * (1 << 30)), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_model_allocating_gigabytes_fails_validation_and_daemon_lives(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    server: ArtifactServer,
    forge: Forge,
    demo_model: Path,
    demo_manifest: Manifest,
) -> None:
    """A signed model that allocates 4 GiB per inference fails validation_failed in the
    memory-limited child; the daemon never loads it and keeps running the old model."""
    big = variants.hungry(demo_model, tmp_path / "hungry.onnx", gib=4.0)
    m2 = variants.manifest_for(big, demo_manifest, 2)
    url = server.add(m2.sha256, big.read_bytes())
    d = DaemonProcess(tmp_path / "d", config(tmp_path, mosquitto.port, forge))
    with address_space_cap(12.0), d:  # the daemon inherits the cap
        recorder.wait_for(n_detections_after(recorder, 0, 3), timeout=60)
        send(mosquitto.port, forge.command(m2, url=url, device=DEV))
        wait_state(recorder, "cmd-1", TERMINAL, 120)
        done = len(recorder.on(DET))
        recorder.wait_for(n_detections_after(recorder, done, 3), timeout=30)
        alive = d.proc is not None and d.proc.poll() is None
        log = d.log()
    assert terminal(recorder, "cmd-1") == {(OtaState.FAILED, Reason.VALIDATION_FAILED)}, log[-3000:]
    (failed,) = [s for s in states(recorder, "cmd-1") if s.state is OtaState.FAILED]
    assert failed.detail is not None and "memory-limited" in failed.detail
    assert alive
    assert {m.model.sha256 for _, m in detections(recorder)} == {sha(demo_model)}


TERMINAL = {OtaState.COMMITTED, OtaState.FAILED, OtaState.ROLLED_BACK, OtaState.REJECTED}


@pytest.mark.parametrize("name", ["pointer.json", "job.json"])
def test_damaged_store_file_starts_on_model_path_and_says_so(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    forge: Forge,
    demo_model: Path,
    name: str,
) -> None:
    """A non-UTF-8 pointer or journal: the daemon runs model.path and its OTA state says the
    store is damaged."""
    models = tmp_path / "state" / "models"
    models.mkdir(parents=True)
    (models / name).write_bytes(b'{"active": \xff\xfe truncated')
    with DaemonProcess(tmp_path / "d", config(tmp_path, mosquitto.port, forge)) as d:
        recorder.wait_for(n_detections_after(recorder, 0, 3), timeout=60)
        recorder.wait_for(lambda msgs: any(m.topic == STATE for m in msgs), timeout=30)
        log = d.log()
    got = [OtaStateMessage.model_validate_json(m.payload) for m in recorder.on(STATE)]
    assert got and got[-1].state is OtaState.IDLE, log[-3000:]
    assert got[-1].detail is not None and "store damaged" in got[-1].detail
    assert name in got[-1].detail
    assert {m.model.sha256 for _, m in detections(recorder)} == {sha(demo_model)}


def test_unreadable_ledger_refuses_commands_until_cleared(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    server: ArtifactServer,
    forge: Forge,
    zoo: dict[str, Path],
    demo_manifest: Manifest,
) -> None:
    """With ledger.json and its .bak damaged, a valid command is rejected ledger_unreadable and
    the sequence files are left for the operator."""
    models = tmp_path / "state" / "models"
    models.mkdir(parents=True)
    (models / "ledger.json").write_bytes(b'{"last_sequence": 4')
    (models / "ledger.json.bak").write_bytes(b"\x80\x81")
    m2 = variants.manifest_for(zoo["v2"], demo_manifest, 2)
    url = server.add(m2.sha256, zoo["v2"].read_bytes())
    with DaemonProcess(tmp_path / "d", config(tmp_path, mosquitto.port, forge)) as d:
        recorder.wait_for(n_detections_after(recorder, 0, 3), timeout=60)
        send(mosquitto.port, forge.command(m2, url=url, device=DEV))
        wait_state(recorder, "cmd-1", TERMINAL, 30)
        log = d.log()
    assert terminal(recorder, "cmd-1") == {(OtaState.REJECTED, Reason.LEDGER_UNREADABLE)}, log[
        -3000:
    ]
    assert (models / "ledger.json").read_bytes() == b'{"last_sequence": 4'


def test_committed_model_that_keeps_crashing_is_rolled_back(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    server: ArtifactServer,
    forge: Forge,
    zoo: dict[str, Path],
    demo_model: Path,
    demo_manifest: Manifest,
) -> None:
    """kill -9 of the daemon after a commit, as often as `committed_crashes` (default 3): the
    next start runs the previous model and the OTA state says rolled_back(crash_loop)."""
    m2 = variants.manifest_for(zoo["v2"], demo_manifest, 2)
    url = server.add(m2.sha256, zoo["v2"].read_bytes())
    cfg = config(tmp_path, mosquitto.port, forge)
    with DaemonProcess(tmp_path / "d1", cfg) as d:
        recorder.wait_for(n_detections_after(recorder, 0, 2), timeout=60)
        send(mosquitto.port, forge.command(m2, url=url, device=DEV))
        wait_state(recorder, "cmd-1", TERMINAL, 60)
        d.kill()  # crash 1, on the committed model
    assert terminal(recorder, "cmd-1") == {(OtaState.COMMITTED, None)}
    for run in (2, 3):  # crashes 2 and 3, each once the new start runs frames
        boots = {m.boot_id for _, m in detections(recorder)}
        with DaemonProcess(tmp_path / f"d{run}", cfg) as d:
            recorder.wait_for(
                lambda _m, b=boots: any(m.boot_id not in b for _, m in detections(recorder)), 60
            )
            d.kill()
    boots = {m.boot_id for _, m in detections(recorder)}
    with DaemonProcess(tmp_path / "d4", cfg) as d:
        recorder.wait_for(
            lambda _m: sum(m.boot_id not in boots for _, m in detections(recorder)) >= 3,
            timeout=60,
        )
        recorder.wait_for(
            lambda msgs: any(m.topic == STATE and b"crash_loop" in m.payload for m in msgs), 30
        )
        log = d.log()
    last = [m for _, m in detections(recorder) if m.boot_id not in boots]
    assert {m.model.sha256 for m in last} == {sha(demo_model)}, log[-3000:]
    rolled = [
        s
        for s in (OtaStateMessage.model_validate_json(m.payload) for m in recorder.on(STATE))
        if s.reason is Reason.CRASH_LOOP
    ]
    assert rolled and rolled[-1].state is OtaState.ROLLED_BACK
    assert rolled[-1].model is not None and rolled[-1].model.sha256 == sha(demo_model)
