"""Cost of the web page on `edge-gateway serve` with N simulated devices.

What runs (real processes, except the devices: threads in this process, as in
bench/bench_gateway.py): a private Mosquitto, `edge-gateway serve` (measured with psutil),
N simulated devices (tests.gateway.sim_device), and Debian's chromium headless (Playwright)
logged in to the page.

Phases, each measured on the gateway process (CPU % of one core, mean and peak RSS):
1. idle: N devices online, no browser;
2. fleet: the Fleet page open (its table re-rendered and pushed over SSE every 2 s);
3. rollout: a rollout of all N devices (canary 1, waves of `--wave-size`) with its page open
   (live over SSE every 1 s) until it succeeds;
plus the server time of GET /fleet and GET /rollouts/<id> with N devices (median of 10).

    python bench/bench_webui.py --devices 200 [--seconds 30] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_gateway import tiny_model  # noqa: E402
from bench.gatewayproc import MeteredGateway  # noqa: E402
from tests.gateway.conftest import ADMIN, ADMIN_TOKEN, cli, sha256_hex, write_config  # noqa: E402
from tests.gateway.sim_device import SimDevice, SimOptions, device_token  # noqa: E402
from tests.helpers.broker import Mosquitto, free_port, wait_port  # noqa: E402


class Sampler:
    """CPU seconds and RSS samples of the gateway between `start()` and `stop()`."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.rss: list[int] = []
        self._stop = threading.Event()

    def start(self) -> Sampler:
        self._t0 = time.monotonic()
        self._cpu0 = sum(self.proc.cpu_times()[:2])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.rss.append(self.proc.memory_info().rss)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self._t0
        cpu = sum(self.proc.cpu_times()[:2]) - self._cpu0
        rss = self.rss or [self.proc.memory_info().rss]
        return {
            "seconds": round(wall, 1),
            "cpu_pct": round(100 * cpu / wall, 1),
            "rss_mean_mb": round(statistics.mean(rss) / 2**20, 1),
            "rss_peak_mb": round(max(rss) / 2**20, 1),
        }


def start_devices(n: int, port: int, keys: dict, sha: str, url: str) -> list[SimDevice]:
    opts = SimOptions(step_s=0.02, probation_s=0.5, download=True)
    sims = []
    for i in range(n):
        s = SimDevice(
            f"sim-{i:03d}",
            "127.0.0.1",
            port,
            keys["gateway_keys"],
            keys["release_keys"],
            ("bench", 1, sha),
            opts,
        )
        s.start()
        sims.append(s)
        body = {"device": s.device, "token_sha256": sha256_hex(device_token(s.device))}
        httpx.post(f"{url}/v1/devices", json=body, headers=ADMIN).raise_for_status()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen = httpx.get(f"{url}/v1/devices", headers=ADMIN, timeout=10).json()
        if sum(1 for d in seen if d["online"] and d["model"]) == n:
            return sims
        time.sleep(0.5)
    raise SystemExit("devices did not all come online")


def server_ms(client: httpx.Client, path: str) -> float:
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        client.get(path).raise_for_status()
        times.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(times), 1)


def run(args: argparse.Namespace, tmp: Path, broker: Mosquitto) -> dict:  # noqa: PLR0915
    from playwright.sync_api import sync_playwright

    http_port = free_port()
    config = write_config(tmp, broker.port, http_port, logging={"level": "warning"})
    cli(config, "keys", "init")
    keys = json.loads(cli(config, "keys", "export", "--json").stdout)
    model = tiny_model(tmp / "tiny.onnx")
    for v in (1, 2):
        cli(config, "models", "add", str(model), "--name", "bench", "--version", str(v))
    sha = {
        m["version"]: m["sha256"]
        for m in json.loads(cli(config, "models", "list", "--json").stdout)
    }
    gw = MeteredGateway(config, tmp / "gw.log")
    out: dict = {"devices": args.devices}
    try:
        wait_port(http_port, timeout=30)
        url = f"http://127.0.0.1:{http_port}"
        sims = start_devices(args.devices, broker.port, keys, sha[1], url)
        proc = psutil.Process(gw.proc.pid)
        time.sleep(2)
        s = Sampler(proc).start()
        time.sleep(args.seconds)
        out["idle"] = s.stop()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/login")
            page.get_by_label("Admin token").fill(ADMIN_TOKEN)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url("**/fleet")
            cookies = {c["name"]: c["value"] for c in page.context.cookies()}
            with httpx.Client(base_url=url, cookies=cookies, timeout=30) as client:
                out["get_fleet_ms"] = server_ms(client, "/fleet")
                s = Sampler(proc).start()
                time.sleep(args.seconds)
                out["fleet_page_open"] = s.stop()
                body = {
                    "model": "bench",
                    "version": 2,
                    "devices": [x.device for x in sims],
                    "canary": 1,
                    "wave_size": args.wave_size,
                    "max_failures": 5,
                    "timeout_s": 120,
                }
                s = Sampler(proc).start()
                resp = httpx.post(f"{url}/v1/rollouts", json=body, headers=ADMIN, timeout=60)
                resp.raise_for_status()
                rid = resp.json()["id"]
                page.goto(f"{url}/rollouts/{rid}")
                page.locator(".status", has_text="succeeded").wait_for(timeout=300_000)
                out["rollout_page_open"] = s.stop()
                out["get_rollout_ms"] = server_ms(client, f"/rollouts/{rid}")
            browser.close()
        for x in sims:
            x.stop()
    finally:
        gw.terminate()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--wave-size", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the idle/fleet phases")
    ap.add_argument("--markdown", action="store_true", help="print docs/benchmarks.md rows")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir, Mosquitto(Path(tmpdir) / "broker") as broker:
        out = run(args, Path(tmpdir), broker)
    print(json.dumps(out, indent=2))
    if args.markdown:
        for phase in ("idle", "fleet_page_open", "rollout_page_open"):
            r = out[phase]
            print(
                f"| {args.devices} | {phase.replace('_', ' ')} | {r['seconds']} | "
                f"**{r['cpu_pct']}** | {r['rss_mean_mb']} | **{r['rss_peak_mb']}** |"
            )
        print(f"GET /fleet {out['get_fleet_ms']} ms, GET /rollouts/<id> {out['get_rollout_ms']} ms")
        print(
            f"<!-- {platform.machine()}, {psutil.cpu_count()} cores, Python "
            f"{platform.python_version()} -->"
        )


if __name__ == "__main__":
    main()
