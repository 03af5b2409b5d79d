"""Lightweight simulated devices speaking the real device protocol over a real broker.

Each simulated device is one paho-mqtt client with the device's last will, retained
`status` (with its active model) and retained `ota/state`. It verifies every command with the
real `agent.trust.ota` code and the trusted public keys it is given (signature, device id,
expiry, manifest signature), checks the sequence is increasing, treats a redelivery of the
latest command as the same command, and walks the real OTA state sequence
(downloading -> verifying -> loading -> validating -> active -> committed, or rolled_back with
`probation_failed` for a version it is told to fail). Optionally it downloads the artifact over
HTTP and checks length and SHA-256.

Used by the gateway's end-to-end tests (as subprocesses, so `kill -9` is real) and by
`bench/bench_gateway.py` (200 devices in one process).

    python -m tests.gateway.sim_device --port 1883 --keys keys.json \
        --model demo-yolov8n@1:<sha256> --devices sim-1,sim-2 [--fail-version 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.contracts.ota import (
    ModelId,
    OtaAction,
    OtaCommand,
    OtaRejectedError,
    OtaState,
    OtaStateMessage,
    Progress,
    Reason,
    command_digest,
    parse_command,
    state_bytes,
)
from agent.contracts.payloads import CameraStatus, ModelRef, StatusMessage, dump_payload, rfc3339_ms
from agent.contracts.topics import Topics
from agent.trust.ota import verify_command


def device_token(device: str) -> str:
    """The bearer token test devices (simulated or real) use for downloads and intake."""
    return f"device-token-of-{device}"


@dataclass
class SimOptions:
    """How a simulated device behaves."""

    step_s: float = 0.05  # pause between two OTA states
    probation_s: float = 0.5  # time on probation before committing
    fail_versions: frozenset[int] = frozenset()  # these versions fail probation (roll back)
    download: bool = True  # fetch the artifact and check length and sha256
    drop_commands: int = 0  # ignore this many first commands, as if they never arrived
    prefix: str = "edge"


@dataclass
class SimDevice:
    """One simulated device."""

    device: str
    host: str
    port: int
    gateway_keys: dict[str, str]
    release_keys: dict[str, str]
    active: tuple[str, int, str]  # (name, version, sha256)
    opts: SimOptions = field(default_factory=SimOptions)

    def __post_init__(self) -> None:
        self.topics = Topics(self.device, self.opts.prefix)
        self.boot_id = uuid.uuid4().hex[:12]
        self.previous: tuple[str, int, str] | None = None
        self.last_seq = 0
        self.last_command: tuple[str, str] | None = None  # (id, digest)
        self.last_state: bytes | None = None
        self.busy = False
        self.dropped = 0
        self.lock = threading.Lock()
        self.states: list[tuple[str, str]] = []  # (command id, state) in order, for tests
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sim-{self.device}", clean_session=True
        )
        self.client.will_set(self.topics.status, self._status(False), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, 30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.publish(self.topics.status, self._status(False), qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:  # noqa: ANN001
        client.subscribe(self.topics.ota_command, qos=1)
        client.publish(self.topics.status, self._status(True), qos=1, retain=True)
        if self.last_state is None:
            self._state(OtaState.IDLE, None, None)

    def _status(self, online: bool) -> bytes:
        name, version, sha = self.active
        return dump_payload(
            StatusMessage(
                device=self.device,
                state="online" if online else "offline",
                ts=rfc3339_ms(time.time()),
                boot_id=self.boot_id,
                agent_version="sim",
                model=ModelRef(name=name, version=version, sha256=sha),
                cameras=[CameraStatus(id="cam", state="streaming", fps=10.0)],
            )
        )

    # -- protocol -------------------------------------------------------------------------------

    def _state(
        self,
        state: OtaState,
        cmd: OtaCommand | None,
        reason: Reason | None,
        progress: Progress | None = None,
        detail: str | None = None,
    ) -> None:
        m = None if cmd is None else cmd.manifest.manifest
        msg = OtaStateMessage(
            device=self.device,
            state=state,
            command_id=None if cmd is None else cmd.command_id,
            action=None if cmd is None else cmd.action,
            model=None if m is None else ModelId(name=m.name, version=m.version, sha256=m.sha256),
            active_model=ModelId(
                name=self.active[0], version=self.active[1], sha256=self.active[2]
            ),
            progress=progress,
            reason=reason,
            detail=detail,
            probation_ends=rfc3339_ms(time.time() + self.opts.probation_s)
            if state is OtaState.ACTIVE and cmd is not None and cmd.action is OtaAction.DEPLOY
            else None,
            ts=rfc3339_ms(time.time()),
        )
        payload = state_bytes(msg)
        self.last_state = payload
        if cmd is not None:
            self.states.append((cmd.command_id, state.value))
        self.client.publish(self.topics.ota_state, payload, qos=1, retain=True)

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self.lock:
            if self.dropped < self.opts.drop_commands:
                self.dropped += 1
                return
        cmd: OtaCommand | None = None
        try:
            cmd = parse_command(msg.payload)
            verify_command(cmd, self.gateway_keys, self.release_keys, device=self.device)
            with self.lock:
                digest = command_digest(cmd)
                if self.last_command is not None and cmd.command_id == self.last_command[0]:
                    if digest == self.last_command[1] and self.last_state is not None:
                        client.publish(self.topics.ota_state, self.last_state, qos=1, retain=True)
                        return
                    raise OtaRejectedError(Reason.REPLAYED, "command id reused")
                if self.busy:
                    raise OtaRejectedError(Reason.BUSY, "another command is in progress")
                if cmd.sequence <= self.last_seq:
                    raise OtaRejectedError(
                        Reason.OLD_SEQUENCE, f"{cmd.sequence} <= {self.last_seq}"
                    )
                self.last_seq = cmd.sequence
                self.last_command = (cmd.command_id, digest)
                self.busy = True
            threading.Thread(target=self._run, args=(cmd,), daemon=True).start()
        except OtaRejectedError as err:
            self._state(OtaState.REJECTED, cmd, err.reason, detail=err.detail)

    def _run(self, cmd: OtaCommand) -> None:
        m = cmd.manifest.manifest
        target = (m.name, m.version, m.sha256)
        try:
            if cmd.action is OtaAction.ROLLBACK:
                if self.previous != target:
                    self._state(OtaState.REJECTED, cmd, Reason.ROLLBACK_UNAVAILABLE)
                    return
                for s in (OtaState.LOADING, OtaState.VALIDATING, OtaState.ACTIVE):
                    self._state(s, cmd, None)
                    time.sleep(self.opts.step_s)
                self.active, self.previous = target, self.active
                self.client.publish(self.topics.status, self._status(True), qos=1, retain=True)
                self._state(OtaState.COMMITTED, cmd, None)
                return
            if self.active[0] == m.name and m.version <= self.active[1]:
                why = f"{m.name} v{m.version} is not above v{self.active[1]}"
                self._state(OtaState.REJECTED, cmd, Reason.LOWER_VERSION, detail=why)
                return
            self._state(OtaState.DOWNLOADING, cmd, None, Progress(bytes=0, total=m.length))
            if self.opts.download:
                ok = self._download(cmd)
                if not ok:
                    return
            for s in (OtaState.VERIFYING, OtaState.LOADING, OtaState.VALIDATING):
                time.sleep(self.opts.step_s)
                self._state(s, cmd, None)
            time.sleep(self.opts.step_s)
            old = self.active
            self.active, self.previous = target, old
            self.client.publish(self.topics.status, self._status(True), qos=1, retain=True)
            self._state(OtaState.ACTIVE, cmd, None)
            time.sleep(self.opts.probation_s)
            if m.version in self.opts.fail_versions:
                self.active, self.previous = old, None
                self.client.publish(self.topics.status, self._status(True), qos=1, retain=True)
                self._state(
                    OtaState.ROLLED_BACK,
                    cmd,
                    Reason.PROBATION_FAILED,
                    detail="simulated: no detections on probation",
                )
            else:
                self._state(OtaState.COMMITTED, cmd, None)
        finally:
            with self.lock:
                self.busy = False

    def _download(self, cmd: OtaCommand) -> bool:
        import httpx

        m = cmd.manifest.manifest
        h = hashlib.sha256()
        n = 0
        try:
            assert cmd.artifact_url is not None
            auth = {"Authorization": f"Bearer {device_token(self.device)}"}
            with httpx.stream("GET", cmd.artifact_url, headers=auth, timeout=10.0) as resp:
                resp.raise_for_status()
                for chunk in resp.iter_bytes(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
                    if n > m.length:
                        break
        except httpx.HTTPError as err:
            self._state(OtaState.FAILED, cmd, Reason.DOWNLOAD_FAILED, detail=str(err)[:200])
            return False
        if n != m.length or h.hexdigest() != m.sha256:
            self._state(OtaState.FAILED, cmd, Reason.HASH_MISMATCH)
            return False
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument(
        "--keys", required=True, help="JSON file {release_keys: {...}, gateway_keys: {...}}"
    )
    ap.add_argument("--model", required=True, help="NAME@VERSION:SHA256 running at start")
    ap.add_argument("--devices", required=True, help="comma-separated device ids")
    ap.add_argument("--fail-version", type=int, action="append", default=[])
    ap.add_argument("--probation", type=float, default=0.5)
    ap.add_argument("--step", type=float, default=0.05)
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--drop-commands", type=int, default=0, help="ignore the first N commands")
    args = ap.parse_args()
    keys = json.loads(open(args.keys, encoding="utf-8").read())
    name_ver, _, sha = args.model.partition(":")
    name, _, ver = name_ver.partition("@")
    opts = SimOptions(
        step_s=args.step,
        probation_s=args.probation,
        fail_versions=frozenset(args.fail_version),
        download=not args.no_download,
        drop_commands=args.drop_commands,
    )
    sims = [
        SimDevice(
            d,
            args.host,
            args.port,
            keys["gateway_keys"],
            keys["release_keys"],
            (name, int(ver), sha),
            opts,
        )
        for d in args.devices.split(",")
    ]
    for s in sims:
        s.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)  # noqa: T201 - a test-helper CLI, read by the test harness
    stop.wait()
    for s in sims:
        s.stop()


if __name__ == "__main__":
    main()
