"""`edge-gateway` console command: keys, models, serve, deploy, abort, rollouts, devices, watch.

Commands that change a running rollout (deploy, abort) go through the server's JSON API;
read-only views (rollouts, devices, models list) read the SQLite state directly, so they work
while the server is down too. Heavy or optional imports happen inside the commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from agent import __version__
from agent.gateway.config import (
    DEFAULT_CONFIG_PATH,
    GatewayConfig,
    GatewayConfigError,
    load_gateway_config,
)

CONFIG_ENV = "EDGE_GATEWAY_CONFIG"


def _config(ctx: click.Context) -> GatewayConfig:
    path: Path = ctx.obj["config_path"]
    try:
        return load_gateway_config(path)
    except GatewayConfigError as err:
        lines = "\n".join(f"  {p}" for p in err.problems)
        raise click.ClickException(f"{path}: {len(err.problems)} problem(s)\n{lines}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-gateway")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get(CONFIG_ENV, str(DEFAULT_CONFIG_PATH)),
    show_default=f"${CONFIG_ENV} or {DEFAULT_CONFIG_PATH}",
    help="Gateway config file (YAML).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path) -> None:
    """Edge gateway: model registry, signed OTA rollouts, fleet view, dataset intake."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


# -- keys ------------------------------------------------------------------------------------


@main.group("keys")
def keys_group() -> None:
    """Create the release and gateway keys; export their public halves for device configs."""


@keys_group.command("init")
@click.pass_context
def keys_init(ctx: click.Context) -> None:
    """Create missing keys in keys_dir (0700; files 0600). Existing keys are kept."""
    from agent.gateway.keys import KeyFileError, init_keys

    cfg = _config(ctx)
    try:
        result = init_keys(cfg.keys_dir)
    except (KeyFileError, OSError) as err:
        raise click.ClickException(str(err)) from None
    for role, (info, created) in result.items():
        click.echo(
            f"{role.value} key {info.key_id}: {'created' if created else 'exists'} "
            f"({cfg.keys_dir / (role.value + '.key')})"
        )
    click.echo("Private keys are never printed; `edge-gateway keys export` prints the public keys.")


@keys_group.command("export")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
@click.pass_context
def keys_export(ctx: click.Context, as_json: bool) -> None:
    """Print the public keys in the form of the device config's `ota:` section."""
    from agent.gateway.keys import KeyFileError, KeyRole, export_yaml, public_info

    cfg = _config(ctx)
    try:
        if as_json:
            rel = public_info(cfg.keys_dir, KeyRole.RELEASE)
            gw = public_info(cfg.keys_dir, KeyRole.GATEWAY)
            click.echo(
                json.dumps(
                    {
                        "release_keys": {rel.key_id: rel.public_key},
                        "gateway_keys": {gw.key_id: gw.public_key},
                    },
                    indent=2,
                )
            )
        else:
            click.echo(export_yaml(cfg.keys_dir), nl=False)
    except KeyFileError as err:
        raise click.ClickException(str(err)) from None


@main.command("intake-token")
@click.argument("device")
def intake_token(device: str) -> None:
    """Make a bearer token for DEVICE's hard-frame uploads (printed once; store only its hash)."""
    from agent.ids import check_id

    try:
        check_id(device, "device id")
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    click.echo(f"token for the device ({device}): {token}")
    click.echo(f"gateway.yaml, under intake.tokens_sha256:\n    {device}: {digest}")


# -- models ----------------------------------------------------------------------------------


@main.group("models")
def models_group() -> None:
    """The model registry."""


def _parse_imgsz(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        parts = [int(p) for p in value.replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter("use H,W (e.g. 320,320) or one number") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise click.BadParameter("use H,W (e.g. 320,320) or one number")
    return parts[0], parts[1]


@models_group.command("add")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--name", required=True, help="Model name ([a-z0-9-]); versions are per name.")
@click.option("--version", "version", required=True, type=int, help="Integer, above the last.")
@click.option(
    "--labels",
    default=None,
    help="Class names: 'a,b,c' or a file, one per line. Default: the ONNX/engine metadata.",
)
@click.option("--imgsz", default=None, help="Input size H,W when the file does not say it.")
@click.option("--min-tensorrt", default=None, help="Engines: lowest TensorRT version.")
@click.option("--gpu-arch", default=None, help="Engines: GPU arch built for, e.g. sm_87.")
@click.option("--expires-days", type=float, default=None, help="Manifest expires after this.")
@click.pass_context
def models_add(
    ctx: click.Context,
    file: Path,
    name: str,
    version: int,
    labels: str | None,
    imgsz: str | None,
    min_tensorrt: str | None,
    gpu_arch: str | None,
    expires_days: float | None,
) -> None:
    """Store FILE (content-addressed), write and sign its manifest."""
    from pydantic import ValidationError

    from agent.gateway.db import Store
    from agent.gateway.keys import KeyFileError, KeyRole, load_key
    from agent.gateway.registry import RegistryError, add_model, parse_labels
    from agent.manifest import Compat
    from agent.ota.protocol import format_rfc3339

    cfg = _config(ctx)
    try:
        compat = Compat(min_tensorrt=min_tensorrt, gpu_arch=gpu_arch)
    except ValidationError as err:
        option = {"min_tensorrt": "--min-tensorrt", "gpu_arch": "--gpu-arch"}
        raise click.ClickException(
            "; ".join(f"{option[str(e['loc'][0])]}: {e['msg']}" for e in err.errors())
        ) from None
    try:
        key = load_key(cfg.keys_dir, KeyRole.RELEASE)
        names = parse_labels(labels) if labels else None
        expires = (
            None if expires_days is None else format_rfc3339(time.time() + expires_days * 86400)
        )
        with Store(cfg.db_path) as store:
            row = add_model(
                store,
                cfg.artifacts_dir,
                key,
                file,
                name=name,
                version=version,
                labels=names,
                input_size=_parse_imgsz(imgsz),
                compat=compat,
                expires=expires,
            )
    except (RegistryError, KeyFileError) as err:
        raise click.ClickException(str(err)) from None
    m = row.manifest
    click.echo(
        f"added {row.name}@{row.version}: {row.format}, {row.length} bytes, sha256 {row.sha256}, "
        f"input {m['input_size'][0]}x{m['input_size'][1]}, classes {', '.join(m['class_names'])}"
    )


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """Registered models, oldest first."""
    from agent.gateway.db import Store

    cfg = _config(ctx)
    with Store(cfg.db_path) as store:
        rows = store.models()
    if as_json:
        click.echo(json.dumps([r.manifest for r in rows], indent=2))
        return
    if not rows:
        click.echo("no models (edge-gateway models add FILE --name N --version V)")
    for r in rows:
        m = r.manifest
        click.echo(
            f"{r.name}@{r.version}  {r.format:6} {r.length:>11} B  "
            f"{m['input_size'][0]}x{m['input_size'][1]}  {len(m['class_names'])} classes  "
            f"{r.sha256[:12]}  {m['created']}"
        )


# -- serve -----------------------------------------------------------------------------------


@main.command("serve")
@click.pass_context
def serve_command(ctx: click.Context) -> None:
    """Run the gateway: HTTP API + artifacts + intake, MQTT fleet tracking, rollouts."""
    from agent.gateway.keys import KeyFileError
    from agent.gateway.service import serve
    from agent.logs import configure_logging

    cfg = _config(ctx)
    configure_logging(cfg.logging.format, cfg.logging.level)
    try:
        serve(cfg)
    except KeyFileError as err:
        raise click.ClickException(str(err)) from None


# -- API client ------------------------------------------------------------------------------


def _api(cfg: GatewayConfig, method: str, path: str, body: Any = None) -> Any:
    import httpx

    url = f"http://127.0.0.1:{cfg.http.port}{path}"
    try:
        resp = httpx.request(method, url, json=body, timeout=30.0)
    except httpx.HTTPError as err:
        raise click.ClickException(
            f"cannot reach the gateway at {url} ({err}); is `edge-gateway serve` running?"
        ) from None
    data = (
        resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    )
    if resp.status_code >= 400:
        raise click.ClickException(data.get("error", f"HTTP {resp.status_code}"))
    return data


@main.command("deploy")
@click.argument("target", metavar="MODEL@VERSION")
@click.option("--devices", required=True, help="Comma-separated device ids (canary first).")
@click.option("--canary", type=int, default=None, help="Canary devices (default from config).")
@click.option("--wave-size", type=int, default=None, help="Devices per wave after the canary.")
@click.option("--max-failures", type=int, default=None, help="Failures that abort the rollout.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Per-device deadline, s.")
@click.option("--wait/--no-wait", default=False, help="Follow the rollout until it ends.")
@click.pass_context
def deploy(
    ctx: click.Context,
    target: str,
    devices: str,
    canary: int | None,
    wave_size: int | None,
    max_failures: int | None,
    timeout_s: float | None,
    wait: bool,
) -> None:
    """Start a rollout of MODEL@VERSION: canary first, then waves; abort and roll back on
    failures."""
    name, sep, ver = target.partition("@")
    if not sep or not ver.isdigit():
        raise click.BadParameter("expected MODEL@VERSION, e.g. demo-yolov8n@2", param_hint="TARGET")
    cfg = _config(ctx)
    body = {
        "model": name,
        "version": int(ver),
        "devices": [d.strip() for d in devices.split(",") if d.strip()],
        "canary": canary,
        "wave_size": wave_size,
        "max_failures": max_failures,
        "timeout_s": timeout_s,
    }
    view = _api(cfg, "POST", "/v1/rollouts", body)
    click.echo(f"rollout {view['id']} started: {name}@{ver} to {len(view['devices'])} device(s)")
    if wait:
        _follow(cfg, int(view["id"]))


def _follow(cfg: GatewayConfig, rid: int) -> None:
    last = ""
    while True:
        view = _api(cfg, "GET", f"/v1/rollouts/{rid}")
        line = f"{view['state']} {json.dumps(view['counts'], sort_keys=True)}"
        if line != last:
            click.echo(f"{datetime.now().strftime('%H:%M:%S')} rollout {rid}: {line}")
            last = line
        if view["state"] in ("succeeded", "aborted"):
            _print_rollout(view, time.time())
            if view["state"] == "aborted":
                sys.exit(1)
            return
        time.sleep(1.0)


@main.command("abort")
@click.argument("rollout_id", type=int)
@click.option("--reason", default="aborted by operator", help="Recorded with the rollout.")
@click.pass_context
def abort(ctx: click.Context, rollout_id: int, reason: str) -> None:
    """Abort a running rollout: stop sending and roll back devices that committed."""
    cfg = _config(ctx)
    view = _api(cfg, "POST", f"/v1/rollouts/{rollout_id}/abort", {"reason": reason})
    click.echo(f"rollout {rollout_id}: {view['state']}")


# -- views -----------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _print_rollout(view: dict[str, Any], now: float) -> None:
    counts = " ".join(f"{k}={v}" for k, v in sorted(view["counts"].items()))
    done = sum(
        1 for d in view["devices"] if d["state"] not in ("pending", "sent", "updating", "reverting")
    )
    click.echo(
        f"rollout {view['id']}  {view['model']}@{view['version']}  {view['state']}  "
        f"wave {view['wave']}/{view['waves']}  {done}/{len(view['devices'])} done  {counts}"
    )
    if view["reason"]:
        click.echo(f"  reason: {view['reason']}")
    for d in view["devices"]:
        progress = "" if d["progress"] is None else f"{100 * d['progress']:.0f}%"
        left = "" if d["remaining_s"] is None else f"timeout in {_age(d['remaining_s'])}"
        extra = " ".join(x for x in (d["ota_state"] or "", progress, left, d["reason"] or "") if x)
        wave = "canary" if d["wave"] == 0 else f"wave {d['wave']}"
        click.echo(f"  {d['device']:<24} {wave:<8} {d['state']:<13} {extra}")


@main.command("rollouts")
@click.argument("rollout_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def rollouts(ctx: click.Context, rollout_id: int | None, as_json: bool) -> None:
    """Show rollouts (or one) with each device's state and progress, from the state file."""
    from agent.gateway.db import Store
    from agent.gateway.fleet import rollout_view

    cfg = _config(ctx)
    now = time.time()
    with Store(cfg.db_path) as store:
        ids = [rollout_id] if rollout_id is not None else store.rollout_ids()
        views = []
        for rid in ids:
            r = store.load_rollout(rid)
            if r is None:
                raise click.ClickException(f"no rollout {rid}")
            views.append(rollout_view(r, now))
    if as_json:
        click.echo(json.dumps(views if rollout_id is None else views[0], indent=2))
        return
    if not views:
        click.echo("no rollouts")
    for v in views:
        _print_rollout(v, now)


@main.command("devices")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def devices(ctx: click.Context, as_json: bool) -> None:
    """The fleet: online/offline, model, fps, last seen, OTA state."""
    from agent.gateway.db import Store
    from agent.gateway.server import device_view

    cfg = _config(ctx)
    now = time.time()
    with Store(cfg.db_path) as store:
        views = [device_view(d, now, cfg.offline_after_s) for d in store.devices()]
    if as_json:
        click.echo(json.dumps(views, indent=2))
        return
    if not views:
        click.echo("no devices seen yet")
        return
    click.echo(f"{'DEVICE':<24} {'STATE':<8} {'MODEL':<24} {'FPS':>6} {'SEEN':>6}  OTA")
    for v in views:
        state = "offline" if not v["online"] else ("stale" if v["stale"] else "online")
        fps = "-" if v["fps"] is None else f"{v['fps']:.1f}"
        ota = v["ota_state"] or "-"
        if v["ota_reason"]:
            ota += f" ({v['ota_reason']})"
        if v["malformed"]:
            ota += f"  [{v['malformed']} malformed msgs]"
        click.echo(
            f"{v['device']:<24} {state:<8} {v['model'] or '-':<24} {fps:>6} "
            f"{_age(now - v['last_seen']):>6}  {ota}"
        )


@main.command("watch")
@click.option("--devices", "devices_", default="+", help="Comma-separated device ids (all: +).")
@click.option("--cameras", default="+", help="Comma-separated camera ids (all: +).")
@click.option("--count", type=int, default=0, help="Stop after this many messages (0: never).")
@click.option("--duration", type=float, default=0.0, help="Stop after this many seconds.")
@click.pass_context
def watch(ctx: click.Context, devices_: str, cameras: str, count: int, duration: float) -> None:
    """Live detections from chosen devices/cameras, one line per frame; gaps are flagged."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from pydantic import ValidationError

    from agent.messages.payloads import DetectionMessage
    from agent.messages.render import detection_line
    from agent.messages.topics import detections_filter

    cfg = _config(ctx)
    prefix = cfg.mqtt.topic_prefix
    filters = [
        detections_filter(prefix, d.strip(), c.strip())
        for d in devices_.split(",")
        for c in cameras.split(",")
    ]
    done = threading.Event()
    seen = 0
    last_seq: dict[tuple[str, str, str], int] = {}

    def on_connect(client, userdata, flags, rc, props) -> None:  # noqa: ANN001
        client.subscribe([(f, 1) for f in filters])

    def on_message(client, userdata, msg) -> None:  # noqa: ANN001
        nonlocal seen
        try:
            det = DetectionMessage.model_validate_json(msg.payload)
        except ValidationError as err:
            click.echo(f"malformed message on {msg.topic}: {err.errors()[0]['msg']}", err=True)
            return
        if det.source == "yolo":
            key = (det.device, det.camera, det.boot_id)
            prev = last_seq.get(key)
            if prev is not None and det.seq != prev + 1:
                click.echo(f"  ! gap on {det.device}/{det.camera}: #{prev} -> #{det.seq}")
            last_seq[key] = det.seq
        click.echo(detection_line(det))
        seen += 1
        if count and seen >= count:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-gateway-watch-{os.getpid()}")
    if cfg.mqtt.username is not None:
        client.username_pw_set(cfg.mqtt.username, cfg.mqtt.password())
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.keepalive_s)
    client.loop_start()
    try:
        done.wait(duration or None)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
