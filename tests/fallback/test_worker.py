"""The Fallback: hot-path decisions, the refinement message, newest-only hand-off, errors,
and a worker crash (kill -9) while the daemon keeps detecting."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent.contracts.payloads import DetectionMessage
from agent.fallback.config import FallbackConfig
from agent.fallback.factory import create_runtime
from agent.fallback.parse import FlorenceParseError, parse_generation
from agent.fallback.policy import HardFrame
from agent.fallback.worker import Fallback, FallbackState, StateMachine
from agent.util.transitions import IllegalTransitionError
from tests.fallback.conftest import dets, make_frame, make_yolo
from tests.fallback.tiny_florence import CLASS_NAMES
from tests.helpers.polling import wait_for


class Published:
    """Records what the fallback hands to the publisher."""

    def __init__(self, accept: bool = True) -> None:
        self.items: list[tuple[str, int, bytes]] = []
        self.accept = accept
        self.event = threading.Event()

    def __call__(self, camera: str, seq: int, payload: bytes) -> bool:
        self.items.append((camera, seq, payload))
        self.event.set()
        return self.accept


def make_cfg(model: Path | str, tmp_path: Path, **kw: object) -> FallbackConfig:
    base = dict(
        enabled=True,
        model=str(model),
        runtime="torch-fp32",
        task="<CAPTION>",
        worker="thread",
        max_new_tokens=12,
        restart_min_s=0.05,
        restart_max_s=0.2,
        capture={"dir": str(tmp_path / "cap"), "quota_bytes": 4 * 1024 * 1024},
        policy={"band_lo": 0.3, "band_hi": 0.6},
        rate={"per_minute": 60, "burst": 5},
    )
    base.update(kw)
    return FallbackConfig.model_validate(base)


@pytest.fixture
def running(tiny_model: Path, tmp_path: Path):
    """A started thread-mode Fallback on the tiny model, idle, and its publisher."""
    pub = Published()
    fb = Fallback(make_cfg(tiny_model, tmp_path), "dev-1", pub, tmp_path / "state")
    fb.start()
    wait_for(lambda: fb.stats().state == "idle", 120)
    yield fb, pub
    fb.stop(5.0)


def test_state_machine_rejects_illegal() -> None:
    """disabled -> busy is illegal; disabled -> down -> idle -> busy is the normal path."""
    sm = StateMachine()
    with pytest.raises(IllegalTransitionError):
        sm.to(FallbackState.BUSY)
    for s in (FallbackState.DOWN, FallbackState.IDLE, FallbackState.BUSY, FallbackState.IDLE):
        sm.to(s)
    assert sm.state == FallbackState.IDLE


def test_disabled_never_escalates(tiny_model: Path, tmp_path: Path) -> None:
    """With `enabled: false` no frame is hard and submit does nothing."""
    fb = Fallback(make_cfg(tiny_model, tmp_path, enabled=False), "dev-1", Published(), tmp_path)
    fb.start()
    assert fb.is_hard("cam-1", dets(0.4), 0.0) is False
    assert fb.stats().state == "disabled"


def test_refinement_message_links_to_yolo(
    running, tiny_model: Path, image: np.ndarray, tmp_path: Path
) -> None:
    """The florence2 message validates, carries the YOLO message's identity, refines its seq
    and has the first seq of the camera's own florence2 stream."""
    fb, pub = running
    frame = make_frame(image)
    yolo = make_yolo(frame, seq=41)
    assert fb.is_hard("cam-1", dets(0.9, 0.45), time.monotonic())
    fb.submit(HardFrame(frame, dets(0.9, 0.45), yolo, CLASS_NAMES))
    assert pub.event.wait(60)
    camera, seq, payload = pub.items[0]
    msg = DetectionMessage.model_validate_json(payload)
    assert (camera, seq) == ("cam-1", 0)
    assert msg.source == "florence2" and msg.refines == 41 and msg.hard
    assert msg.stream == "florence2" and msg.seq == 0
    for field in ("device", "camera", "boot_id", "ts", "frame"):
        assert getattr(msg, field) == getattr(yolo, field)
    assert msg.model.name == "tiny-florence2"
    assert (
        msg.model.sha256
        == hashlib.sha256((tiny_model / "model.safetensors").read_bytes()).hexdigest()
    )
    assert msg.task == "<CAPTION>" and isinstance(msg.text, str)
    assert msg.latency_ms.total >= msg.latency_ms.infer > 0
    wait_for(lambda: len(list((tmp_path / "cap" / "cam-1").glob("*/*.json"))) == 1, 10)
    stats = fb.stats()
    assert stats.escalations == 1 and stats.published == 1 and stats.errors == 0


def test_bucket_limits_escalations(running) -> None:
    """Only `burst` hard frames escalate at once; the next waits for a token."""
    fb, _ = running
    now = time.monotonic()
    assert [fb.is_hard("cam-1", dets(0.5), now) for _ in range(7)] == [True] * 5 + [False] * 2
    assert fb.is_hard("cam-1", dets(0.5), now + 1.0) is True  # 60/min: one token per second
    assert fb.is_hard("cam-1", dets(0.95), now + 100.0) is False  # confident frames never escalate


def test_newest_only(running, image: np.ndarray) -> None:
    """Frames submitted while the worker is busy replace each other; the newest is processed."""
    fb, pub = running
    fb.submit(
        HardFrame(
            make_frame(image, index=1),
            dets(0.4),
            make_yolo(make_frame(image, index=1), 1),
            CLASS_NAMES,
        )
    )
    wait_for(lambda: fb.stats().state == "busy" or len(pub.items) >= 1, 60)
    for seq in (2, 3, 4):
        fb.submit(
            HardFrame(
                make_frame(image, index=seq),
                dets(0.4),
                make_yolo(make_frame(image, index=seq), seq),
                CLASS_NAMES,
            )
        )
    wait_for(lambda: len(pub.items) >= 2, 60)
    time.sleep(0.5)  # give a wrongly queued extra frame the chance to show up
    msgs = [DetectionMessage.model_validate_json(p) for _, _, p in pub.items]
    assert [m.refines for m in msgs] == [1, 4]  # the YOLO frames refined
    assert [s for _, s, _ in pub.items] == [0, 1]  # the camera's own florence2 stream
    assert fb.stats().replaced == 2


def test_unparsable_output_is_an_error(tiny_model: Path, tmp_path: Path, image: np.ndarray) -> None:
    """An answer that does not parse is counted and logged; nothing is published or captured."""
    rt = create_runtime("torch-fp32")
    rt.load(tiny_model)
    text = rt.generate(image, "<OD>", 12).text
    rt.close()
    with pytest.raises(
        FlorenceParseError
    ):  # precondition: the random model's <OD> answer is garbage
        parse_generation("<OD>", text, (image.shape[1], image.shape[0]), CLASS_NAMES)
    pub = Published()
    fb = Fallback(make_cfg(tiny_model, tmp_path, task="<OD>"), "dev-1", pub, tmp_path)
    fb.start()
    wait_for(lambda: fb.stats().state == "idle", 120)
    fb.submit(HardFrame(make_frame(image), dets(0.4), make_yolo(make_frame(image), 5), CLASS_NAMES))
    wait_for(lambda: fb.stats().errors == 1, 60)
    fb.stop(5.0)
    assert pub.items == [] and "cannot parse" in (fb.stats().last_error or "")
    assert not list((tmp_path / "cap").glob("*/*/*.jpg"))


def test_publisher_refusal_is_counted(tiny_model: Path, tmp_path: Path, image: np.ndarray) -> None:
    """A full publisher queue is an error in stats, not a silent loss."""
    pub = Published(accept=False)
    fb = Fallback(make_cfg(tiny_model, tmp_path), "dev-1", pub, tmp_path)
    fb.start()
    wait_for(lambda: fb.stats().state == "idle", 120)
    fb.submit(HardFrame(make_frame(image), dets(0.4), make_yolo(make_frame(image), 5), CLASS_NAMES))
    wait_for(lambda: fb.stats().errors == 1, 60)
    fb.stop(5.0)
    assert fb.stats().published == 0 and "refused" in (fb.stats().last_error or "")


def test_bad_model_dir_reports_down_and_retries(tmp_path: Path) -> None:
    """A missing model keeps the fallback down, retried with backoff, while is_hard stays cheap."""
    fb = Fallback(make_cfg(tmp_path / "nope", tmp_path), "dev-1", Published(), tmp_path)
    fb.start()
    wait_for(lambda: fb.stats().errors >= 3, 30)
    s = fb.stats()
    assert s.state == "down" and "does not exist" in (s.last_error or "")
    assert fb.is_hard("cam-1", dets(0.4), time.monotonic()) is True  # hot path unaffected
    fb.stop(2.0)
    assert fb.stats().state == "disabled"


def test_worker_kill_9_daemon_keeps_detecting(
    tiny_model: Path, tmp_path: Path, image: np.ndarray, demo_model: Path
) -> None:
    """kill -9 of the worker process: YOLO keeps running, state goes down, the worker restarts
    with backoff, and a hard frame submitted while it was down runs after the restart."""
    import onnxruntime as ort

    pub = Published()
    cfg = make_cfg(
        tiny_model,
        tmp_path,
        worker="process",
        restart_min_s=0.5,
        restart_max_s=1.0,
        nice=5,
        idle_priority=False,  # a loaded CI machine would starve a SCHED_IDLE worker
    )
    fb = Fallback(cfg, "dev-1", pub, tmp_path)
    fb.start()
    wait_for(lambda: fb.stats().state == "idle", 240)
    pid = fb.stats().worker_pid
    assert pid is not None and pid != os.getpid()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(demo_model), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.rand(1, 3, *inp.shape[2:]).astype(np.float32)
    os.kill(pid, signal.SIGKILL)
    frames_while_down, submitted = 0, False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not pub.items:
        sess.run(None, {inp.name: x})  # the daemon's inference loop goes on
        fb.is_hard("cam-1", dets(0.4), time.monotonic())
        s = fb.stats()
        if s.state == "down":
            frames_while_down += 1
            if not submitted:
                fb.submit(
                    HardFrame(
                        make_frame(image), dets(0.4), make_yolo(make_frame(image), 9), CLASS_NAMES
                    )
                )
                submitted = True
        time.sleep(0.02)  # a camera's frame interval: leave the CPU to the restarting worker
    s = fb.stats()
    fb.stop(5.0)
    assert frames_while_down > 0 and s.restarts == 1
    assert s.worker_pid != pid and "exit code -9" in (s.last_error or "")
    refined = [DetectionMessage.model_validate_json(p).refines for _, _, p in pub.items]
    assert refined == [9]  # waited in the slot, ran after the restart


def test_hung_worker_is_killed_and_restarted(
    tiny_model: Path, tmp_path: Path, image: np.ndarray
) -> None:
    """A worker frozen by SIGSTOP past job_timeout_s is killed, reported, and restarted."""
    cfg = make_cfg(
        tiny_model,
        tmp_path,
        worker="process",
        job_timeout_s=2.0,
        restart_min_s=0.2,
        restart_max_s=0.5,
        idle_priority=False,
    )
    pub = Published()
    fb = Fallback(cfg, "dev-1", pub, tmp_path)
    fb.start()
    wait_for(lambda: fb.stats().state == "idle", 240)
    pid = fb.stats().worker_pid
    os.kill(pid, signal.SIGSTOP)
    fb.submit(HardFrame(make_frame(image), dets(0.4), make_yolo(make_frame(image), 3), CLASS_NAMES))
    wait_for(lambda: fb.stats().restarts == 1 and fb.stats().state == "idle", 240)
    s = fb.stats()
    fb.stop(5.0)
    assert "did not answer within 2 s" in (s.last_error or "") and s.worker_pid != pid
    assert pub.items == []  # the job that hung is dropped and counted, not retried
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the frozen child was killed and reaped
