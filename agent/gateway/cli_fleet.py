"""Fleet commands of `edge-gateway`, all through the running server's admin API
(`GatewayClient`): admin-token, devices (list, enroll, remove), deploy, abort, rollouts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from agent.gateway.cli_common import client_of, config_of
from agent.gateway.gate_view import gate_lines
from agent.util.durations import short_duration

F = TypeVar("F", bound=Callable[..., Any])


def _device_id(device: str) -> str:
    from agent.contracts.ids import check_id

    try:
        check_id(device, "device id")
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return device


# -- credentials -----------------------------------------------------------------------------


@click.command("admin-token")
@click.option("--no-save", is_flag=True, help="Only print it; do not write <keys_dir>/admin.token.")
@click.pass_context
def admin_token(ctx: click.Context, no_save: bool) -> None:
    """Make an admin bearer token: prints it and the line for http.admin_tokens_sha256."""
    from agent.gateway.client import save_admin_token
    from agent.gateway.tokens import new_token, token_sha256

    cfg = config_of(ctx)
    token = new_token()
    click.echo(f"admin token: {token}")
    click.echo(f"gateway.yaml, under http.admin_tokens_sha256:\n    - {token_sha256(token)}")
    if not no_save:
        path = save_admin_token(cfg.keys_dir, token)
        click.echo(
            f"saved to {path} (0600); the CLI reads it there or from $EDGE_GATEWAY_ADMIN_TOKEN"
        )
    click.echo("restart `edge-gateway serve` after editing the config")


@click.command("intake-token")
@click.argument("device")
def intake_token(device: str) -> None:
    """Make a bearer token for DEVICE for the config's intake.tokens_sha256 (prefer
    `devices enroll`, which makes and stores one)."""
    from agent.gateway.tokens import new_token, token_sha256

    _device_id(device)
    token = new_token()
    click.echo(f"token for the device ({device}): {token}")
    click.echo(f"gateway.yaml, under intake.tokens_sha256:\n    {device}: {token_sha256(token)}")


# -- devices ---------------------------------------------------------------------------------


def device_line(v: dict[str, Any], now: float) -> str:
    """One line of `edge-gateway devices`."""
    if v["last_seen"] is None:
        state, seen = "never", "-"
    else:
        state = "offline" if not v["online"] else ("stale" if v["stale"] else "online")
        seen = short_duration(now - v["last_seen"])
    fps = "-" if v["fps"] is None else f"{v['fps']:.1f}"
    ota = v["ota_state"] or "-"
    if v["ota_reason"]:
        ota += f" ({v['ota_reason']})"
    if v["malformed"]:
        ota += f"  [{v['malformed']} malformed msgs]"
    intake = v["intake"]
    refused = intake["refused_quota"] + intake["refused_disk"]
    upload = f"{intake['files']}f/{intake['bytes'] // 1024}KiB" + (
        f" ({refused} refused)" if refused else ""
    )
    from agent.gateway.cli_config import push_summary

    return (
        f"{v['device']:<24} {state:<8} {v['model'] or '-':<24} {fps:>6} {seen:>6}  "
        f"{upload:<22} {ota}  {push_summary(v)}"
    )


@click.group("devices", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def devices_group(ctx: click.Context, as_json: bool) -> None:
    """The fleet (enrolled devices): online/offline, model, fps, last seen, intake, OTA state."""
    if ctx.invoked_subcommand is not None:
        return
    with client_of(ctx) as client:
        views = client.devices()
        stats = client.health()
    if as_json:
        click.echo(json.dumps(views, indent=2))
        return
    now = time.time()
    if not views:
        click.echo("no devices enrolled (edge-gateway devices enroll ID)")
    else:
        header = f"{'DEVICE':<24} {'STATE':<8} {'MODEL':<24} {'FPS':>6} {'SEEN':>6}  "
        click.echo(header + f"{'INTAKE TODAY':<22} OTA")
    for v in views:
        click.echo(device_line(v, now))
    if stats["unknown_device_messages"]:
        recent = ", ".join(stats["recent_unknown_devices"])
        click.echo(
            f"ignored {stats['unknown_device_messages']} message(s) from devices that are not "
            f"enrolled (recent: {recent})"
        )


@devices_group.command("enroll")
@click.argument("device")
@click.option("--token-sha256", default=None, help="Use a token made elsewhere (its SHA-256).")
@click.pass_context
def devices_enroll(ctx: click.Context, device: str, token_sha256: str | None) -> None:
    """Put DEVICE on the device list; prints its bearer token once (intake and downloads)."""
    with client_of(ctx) as client:
        answer = client.enroll(_device_id(device), token_sha256)
    click.echo(f"enrolled {device}")
    if answer["token"] is not None:
        click.echo(f"device token (shown once; give it to the device): {answer['token']}")


@devices_group.command("remove")
@click.argument("device")
@click.pass_context
def devices_remove(ctx: click.Context, device: str) -> None:
    """Take DEVICE off the device list; its messages are ignored from now on."""
    with client_of(ctx) as client:
        client.remove(_device_id(device))
    click.echo(f"removed {device}")


# -- rollouts --------------------------------------------------------------------------------


def _wave_options(what: str) -> Callable[[F], F]:
    """The wave options a deploy and a rollback share (`what`: rollout or rollback)."""
    options = (
        click.option(
            "--canary", type=int, default=None, help="Canary devices (default from config)."
        ),
        click.option(
            "--wave-size", type=int, default=None, help="Devices per wave after the canary."
        ),
        click.option(
            "--max-failures", type=int, default=None, help=f"Failures that abort the {what}."
        ),
        click.option(
            "--timeout", "timeout_s", type=float, default=None, help="Per-device deadline, s."
        ),
        click.option("--wait/--no-wait", default=False, help=f"Follow the {what} until it ends."),
    )

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@click.command("deploy")
@click.argument("target", metavar="MODEL@VERSION")
@click.option("--devices", required=True, help="Comma-separated device ids (canary first).")
@_wave_options("rollout")
@click.pass_context
def deploy(ctx: click.Context, target: str, devices: str, wait: bool, **opts: Any) -> None:
    """Start a rollout of MODEL@VERSION: canary first, then waves; abort and roll back on
    failures."""
    name, sep, ver = target.partition("@")
    if not sep or not ver.isdigit():
        raise click.BadParameter("expected MODEL@VERSION, e.g. demo-yolov8n@2", param_hint="TARGET")
    body = {
        "model": name,
        "version": int(ver),
        "devices": [d.strip() for d in devices.split(",") if d.strip()],
        **opts,
    }
    with client_of(ctx) as client:
        view = client.deploy(body)
        click.echo(
            f"rollout {view['id']} started: {name}@{ver} to {len(view['devices'])} device(s)"
        )
        for line in gate_lines(view.get("gate"), target):
            click.echo(line)
        if wait:
            _follow(client, int(view["id"]))


def _follow(client: Any, rid: int) -> None:
    last = ""
    while True:
        view = client.rollout(rid)
        line = f"{view['state']} {json.dumps(view['counts'], sort_keys=True)}"
        if line != last:
            click.echo(f"{datetime.now().strftime('%H:%M:%S')} rollout {rid}: {line}")
            last = line
        if view["state"] in ("succeeded", "aborted"):
            print_rollout(view)
            if view["state"] == "aborted":
                sys.exit(1)
            return
        time.sleep(1.0)


@click.command("abort")
@click.argument("rollout_id", type=int)
@click.option("--reason", default="aborted by operator", help="Recorded with the rollout.")
@click.pass_context
def abort(ctx: click.Context, rollout_id: int, reason: str) -> None:
    """Abort a running rollout: stop sending and roll back devices that committed."""
    with client_of(ctx) as client:
        view = client.abort(rollout_id, reason)
    click.echo(f"rollout {rollout_id}: {view['state']}")


@click.command("rollback")
@click.argument("rollout_id", type=int)
@_wave_options("rollback")
@click.pass_context
def rollback(ctx: click.Context, rollout_id: int, wait: bool, **opts: Any) -> None:
    """Go back: send every device that committed finished rollout ROLLOUT_ID the signed
    `rollback` to the model it ran before, canary first and in waves like a deploy."""
    with client_of(ctx) as client:
        view = client.rollback(rollout_id, opts)
        click.echo(
            f"rollout {view['id']} started: {len(view['devices'])} device(s) of rollout "
            f"{rollout_id} back from {view['model']}@{view['version']}"
        )
        if wait:
            _follow(client, int(view["id"]))


def _device_extra(d: dict[str, Any]) -> str:
    """State, progress, timeout, probation end and the failure's reason and words."""
    progress = "" if d["progress"] is None else f"{100 * d['progress']:.0f}%"
    left = "" if d["remaining_s"] is None else f"timeout in {short_duration(d['remaining_s'])}"
    ends = d.get("probation_ends")
    probation = f"probation ends {ends}" if ends else ""
    why = d["reason"] or ""
    if d.get("detail"):
        why += f": {d['detail']}"
    return " ".join(x for x in (d["ota_state"] or "", progress, probation, left, why) if x)


def print_rollout(view: dict[str, Any]) -> None:
    """A rollout and one line per device."""
    counts = " ".join(f"{k}={v}" for k, v in sorted(view["counts"].items()))
    done = sum(
        1 for d in view["devices"] if d["state"] not in ("pending", "sent", "updating", "reverting")
    )
    what = f"{view['model']}@{view['version']}"
    if view.get("action") == "rollback":
        what = f"rollback of rollout {view['undoes']} (back from {what})"
    click.echo(
        f"rollout {view['id']}  {what}  {view['state']}  "
        f"wave {view['wave']}/{view['waves']}  {done}/{len(view['devices'])} done  {counts}"
    )
    if view["reason"]:
        click.echo(f"  reason: {view['reason']}")
    if "gate" in view:
        for line in gate_lines(view["gate"], f"{view['model']}@{view['version']}"):
            click.echo(line)
    for d in view["devices"]:
        extra = _device_extra(d)
        wave = "canary" if d["wave"] == 0 else f"wave {d['wave']}"
        click.echo(f"  {d['device']:<24} {wave:<8} {d['state']:<13} {extra}")


@click.command("rollouts")
@click.argument("rollout_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def rollouts(ctx: click.Context, rollout_id: int | None, as_json: bool) -> None:
    """Show rollouts (or one) with each device's state and progress."""
    with client_of(ctx) as client:
        views = [client.rollout(rollout_id)] if rollout_id is not None else client.rollouts()
    if as_json:
        click.echo(json.dumps(views if rollout_id is None else views[0], indent=2))
        return
    if not views:
        click.echo("no rollouts")
    for v in views:
        print_rollout(v)


COMMANDS = [admin_token, intake_token, devices_group, deploy, abort, rollback, rollouts]
