"""Fixtures of the gateway tests: configs, keys, model variants, a real server, a real gateway
process and simulated devices (subprocesses, so kill -9 is real)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent.gateway.config import GatewayConfig, parse_gateway_config
from tests.gateway.sim_device import device_token
from tests.helpers.broker import Mosquitto, free_port, wait_port
from tests.helpers.polling import wait_for as wait_for  # shared by the gateway tests

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "engines" / "demo" / "model.onnx"
ADMIN_TOKEN = "test-admin-token-0123456789"  # configured in every test gateway
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def admin_config(**http: Any) -> dict[str, Any]:
    """The `http` section entries that configure ADMIN_TOKEN (plus any `http` extras)."""
    return {"admin_tokens_sha256": [sha256_hex(ADMIN_TOKEN)], **http}


@pytest.fixture(scope="session")
def model_variants(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """v1 the demo ONNX model; v2, v3 copies differing only in metadata (new sha256);
    v4 the demo network with every output NaN (loads, returns garbage)."""
    from tests.ota.models import nan, retagged

    d = tmp_path_factory.mktemp("models")
    return {
        1: DEMO_MODEL,
        2: retagged(DEMO_MODEL, d / "model-v2.onnx", "v2"),
        3: retagged(DEMO_MODEL, d / "model-v3.onnx", "v3"),
        4: nan(DEMO_MODEL, d / "model-v4-nan.onnx"),
    }


def write_config(tmp: Path, broker_port: int, http_port: int, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "keys_dir": str(tmp / "keys"),
        "http": admin_config(
            host="127.0.0.1", port=http_port, public_url=f"http://127.0.0.1:{http_port}"
        ),
        "mqtt": {"host": "127.0.0.1", "port": broker_port},
        "rollout": {"tick_s": 0.2},
        "logging": {"format": "json", "level": "info"},
    }
    for k, v in extra.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(
    config: Path, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `edge-gateway --config CONFIG ARGS...` as a real subprocess (admin token in its
    environment)."""
    proc = subprocess.run(
        [sys.executable, "-m", "agent.gateway.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "EDGE_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"edge-gateway {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


class GatewayProcess:
    """`edge-gateway serve` as a subprocess; log in <tmp>/gateway-N.log."""

    def __init__(self, config: Path, cfg: GatewayConfig) -> None:
        self.config, self.cfg = config, cfg
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.http.port}"

    def start(self) -> GatewayProcess:
        self.runs += 1
        self.log = self.config.parent / f"gateway-{self.runs}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.gateway.cli", "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        try:
            wait_port(self.cfg.http.port, timeout=20)
        except TimeoutError:
            self.kill()
            raise AssertionError(
                f"gateway did not start:\n{self.log.read_text()[-3000:]}"
            ) from None
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=15)
        self.proc = None

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, headers=ADMIN, timeout=10).json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=ADMIN, timeout=10)

    def enroll(self, devices: list[str]) -> None:
        """Enrol `devices` (each with its `device_token`) unless already enrolled."""
        known = {d["device"] for d in self.get("/v1/devices")}
        for d in devices:
            if d not in known:
                body = {"device": d, "token_sha256": sha256_hex(device_token(d))}
                resp = self.post("/v1/devices", body)
                assert resp.status_code == 201, resp.text


class Sims:
    """Simulated devices as one subprocess per group, so each group can be killed for real."""

    def __init__(self, broker_port: int, keys_file: Path, workdir: Path) -> None:
        self.broker_port, self.keys_file, self.workdir = broker_port, keys_file, workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, devices: list[str], model: str, *extra: str) -> None:
        log = (self.workdir / f"sim-{devices[0]}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.gateway.sim_device",
                "--port",
                str(self.broker_port),
                "--keys",
                str(self.keys_file),
                "--model",
                model,
                "--devices",
                ",".join(devices),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        log.close()
        for d in devices:
            self.procs[d] = proc

    def kill(self, device: str) -> None:
        proc = self.procs[device]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in set(self.procs.values()):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


class Site:
    """A broker, a configured gateway with keys and models v1..v3, and simulated devices.

    Keys and registry come from `template` (made once per session by the real CLI) and are
    copied, so each test starts from the same state without re-hashing the models.
    """

    def __init__(self, tmp: Path, broker: Mosquitto, template: Path) -> None:
        self.tmp, self.broker = tmp, broker
        shutil.copytree(template / "keys", tmp / "keys")
        shutil.copytree(template / "data", tmp / "data")
        self.config = write_config(tmp, broker.port, free_port())
        self.cfg = parse_gateway_config(yaml.safe_load(self.config.read_text()), self.config)
        self.keys_file = template / "keys.json"
        self.sha: dict[int, str] = json.loads(
            (template / "sha.json").read_text(),
            object_hook=lambda d: {int(k): v for k, v in d.items()},
        )
        self.gateway = GatewayProcess(self.config, self.cfg)
        self.sims = Sims(broker.port, self.keys_file, tmp)

    def model_arg(self, version: int = 1) -> str:
        return f"demo-yolov8n@{version}:{self.sha[version]}"

    def wait_devices(self, devices: list[str], timeout: float = 20) -> None:
        """Enrol `devices` and wait until each is online with a model."""
        self.gateway.enroll(devices)

        def ready() -> bool:
            seen = {d["device"]: d for d in self.gateway.get("/v1/devices")}
            return all(d in seen and seen[d]["online"] and seen[d]["model"] for d in devices)

        wait_for(ready, timeout, what=f"devices {devices} online")

    def wait_rollout(
        self, rid: int, states: tuple[str, ...] = ("succeeded", "aborted"), timeout: float = 60
    ) -> dict[str, Any]:
        return wait_for(
            lambda: (v := self.gateway.get(f"/v1/rollouts/{rid}"))["state"] in states and v,
            timeout,
            what=f"rollout {rid} in {states}",
        )


@pytest.fixture(scope="session")
def site_template(
    tmp_path_factory: pytest.TempPathFactory, model_variants: dict[int, Path]
) -> Path:
    """Keys (`keys init`), their export, and models v1..v3 (`models add`), made once."""
    tmp = tmp_path_factory.mktemp("site-template")
    config = write_config(tmp, 1883, 8080)
    cli(config, "keys", "init")
    (tmp / "keys.json").write_text(cli(config, "keys", "export", "--json").stdout)
    for v, path in sorted(model_variants.items()):
        cli(config, "models", "add", str(path), "--name", "demo-yolov8n", "--version", str(v))
    listing = json.loads(cli(config, "models", "list", "--json").stdout)
    (tmp / "sha.json").write_text(json.dumps({m["version"]: m["sha256"] for m in listing}))
    return tmp


@pytest.fixture
def site(tmp_path: Path, site_template: Path) -> Iterator[Site]:
    """A running broker and a prepared (not yet started) gateway with three model versions."""
    with Mosquitto(tmp_path / "broker") as broker:
        s = Site(tmp_path, broker, site_template)
        try:
            yield s
        finally:
            s.sims.stop_all()
            s.gateway.kill(signal.SIGTERM)


class ServerThread:
    """A real uvicorn server for an ASGI app on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_rollout(site: Site, devices: list[str], version: int, **opts: object) -> int:
    """POST a rollout of demo-yolov8n@`version` (canary 1, waves of 2, one failure allowed)."""
    body = {
        "model": "demo-yolov8n",
        "version": version,
        "devices": devices,
        "canary": 1,
        "wave_size": 2,
        "max_failures": 1,
        **opts,
    }
    resp = site.gateway.post("/v1/rollouts", body)
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])
