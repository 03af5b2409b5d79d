"""Scale check of `edge-gateway`: one rollout across N simulated devices on a real broker.

What runs (all real processes except the devices, which are threads in this process):
- a private Mosquitto (tests.helpers.broker.Mosquitto);
- `edge-gateway serve` as a subprocess (keys and a small signed model made with the real CLI);
- N simulated devices (tests.gateway.sim_device.SimDevice): one paho client each, verifying
  every command with agent.trust.ota, downloading the artifact over HTTP and checking its
  sha256, walking the OTA states, committing after `--probation` seconds.

Figures: wall time from the deploy request to `succeeded`; the devices' own time (for each
wave, the slowest device from command receipt to commit, summed over the waves); orchestration
time = wall - devices' own time; gateway CPU seconds and peak RSS (sampled every 0.1 s).
Targets (issue 6): N=200 in < 60 s of orchestration, gateway RSS < 200 MB.

    python bench/bench_gateway.py --devices 200 --wave-size 50 [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gatewayproc import MeteredGateway  # noqa: E402
from tests.gateway.conftest import ADMIN, cli, sha256_hex, write_config  # noqa: E402
from tests.gateway.sim_device import SimDevice, SimOptions, device_token  # noqa: E402
from tests.helpers.broker import Mosquitto, free_port, wait_port  # noqa: E402


def tiny_model(path: Path) -> Path:
    """A small real ONNX (input [1,3,64,64] -> [1,6,8]) so downloads are not the bottleneck."""
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 8])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 6, 8])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["s"], value=shape),
            helper.make_node("ConstantOfShape", ["s"], ["output0"]),
        ],
        "g",
        [inp],
        [out],
    )
    m = helper.make_model(graph)
    p = m.metadata_props.add()
    p.key, p.value = "names", "{0: 'person', 1: 'car'}"
    onnx.save(m, str(path))
    return path


class Timeline:
    """Per-device command-receipt and commit times, filled by the simulated devices."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: dict[str, float] = {}
        self.committed: dict[str, float] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--canary", type=int, default=1)
    ap.add_argument("--wave-size", type=int, default=50)
    ap.add_argument("--probation", type=float, default=0.5, help="devices' probation, s")
    ap.add_argument("--step", type=float, default=0.02, help="pause between device states, s")
    ap.add_argument("--markdown", action="store_true", help="print a docs/benchmarks.md row")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmpdir, Mosquitto(Path(tmpdir) / "broker") as broker:
        tmp = Path(tmpdir)
        http_port = free_port()
        config = write_config(tmp, broker.port, http_port, logging={"level": "warning"})
        cli(config, "keys", "init")
        keys = json.loads(cli(config, "keys", "export", "--json").stdout)
        model = tiny_model(tmp / "tiny.onnx")
        for v in (1, 2):
            cli(config, "models", "add", str(model), "--name", "bench", "--version", str(v))
        listing = json.loads(cli(config, "models", "list", "--json").stdout)
        sha = {m["version"]: m["sha256"] for m in listing}

        gw = MeteredGateway(config, tmp / "gw.log")
        try:
            wait_port(http_port, timeout=30)
            url = f"http://127.0.0.1:{http_port}"
            opts = SimOptions(step_s=args.step, probation_s=args.probation, download=True)
            names = [f"sim-{i:03d}" for i in range(args.devices)]
            tl = Timeline()
            sims = []
            for name in names:
                s = SimDevice(
                    name,
                    "127.0.0.1",
                    broker.port,
                    keys["gateway_keys"],
                    keys["release_keys"],
                    ("bench", 1, sha[1]),
                    opts,
                )
                _instrument(s, tl)
                s.start()
                sims.append(s)
            for name in names:  # only enrolled devices exist for the gateway
                body = {"device": name, "token_sha256": sha256_hex(device_token(name))}
                httpx.post(f"{url}/v1/devices", json=body, headers=ADMIN).raise_for_status()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                seen = httpx.get(f"{url}/v1/devices", headers=ADMIN, timeout=10).json()
                if sum(1 for d in seen if d["online"] and d["model"]) == args.devices:
                    break
                time.sleep(0.5)
            else:
                raise SystemExit("devices did not all come online")

            gw.meter()
            t0 = time.monotonic()
            body = {
                "model": "bench",
                "version": 2,
                "devices": names,
                "canary": args.canary,
                "wave_size": args.wave_size,
                "max_failures": 5,
                "timeout_s": 120,
            }
            resp = httpx.post(f"{url}/v1/rollouts", json=body, headers=ADMIN, timeout=60)
            resp.raise_for_status()
            rid = resp.json()["id"]
            while True:
                view = httpx.get(f"{url}/v1/rollouts/{rid}", headers=ADMIN, timeout=30).json()
                if view["state"] in ("succeeded", "aborted"):
                    break
                time.sleep(0.2)
            wall = time.monotonic() - t0
            cpu, peak_mb = gw.stop_meter()
            waves: dict[int, list[str]] = {}
            for d in view["devices"]:
                waves.setdefault(d["wave"], []).append(d["device"])
            own = 0.0
            for devs in waves.values():
                own += max(tl.committed[d] - tl.received[d] for d in devs)
            for s in sims:
                s.stop()
        finally:
            gw.terminate()

    result = {
        "devices": args.devices,
        "waves": len(waves),
        "state": view["state"],
        "counts": view["counts"],
        "wall_s": round(wall, 2),
        "devices_own_s": round(own, 2),
        "orchestration_s": round(wall - own, 2),
        "gateway_cpu_s": round(cpu, 2),
        "gateway_peak_rss_mb": round(peak_mb, 1),
    }
    print(json.dumps(result, indent=2))
    if args.markdown:
        print(
            f"| {args.devices} | {args.canary} + {len(waves) - 1} x {args.wave_size} | "
            f"{view['state']} | {wall:.1f} | {own:.1f} | **{wall - own:.1f}** | {cpu:.1f} | "
            f"**{peak_mb:.0f}** |"
        )
        print(
            f"<!-- {platform.machine()}, {psutil.cpu_count()} cores, Python "
            f"{platform.python_version()} -->"
        )


def _instrument(sim: SimDevice, tl: Timeline) -> None:
    """Record when each device receives its deploy command and when it commits."""
    original_state = sim._state
    original_msg = sim._on_message

    def on_message(client, userdata, msg) -> None:  # noqa: ANN001
        with tl.lock:
            tl.received.setdefault(sim.device, time.monotonic())
        original_msg(client, userdata, msg)

    def state(st, cmd, reason, progress=None, detail=None) -> None:  # noqa: ANN001
        original_state(st, cmd, reason, progress, detail)
        if st.value == "committed":
            with tl.lock:
                tl.committed.setdefault(sim.device, time.monotonic())

    sim._state = state  # type: ignore[method-assign]
    sim.client.on_message = on_message


if __name__ == "__main__":
    main()
