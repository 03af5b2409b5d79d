"""`edge-gateway config push DEVICE FILE`: push a camera config to one device (docs/gateway.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from agent.cli_common import EXISTING_FILE, shown_option
from agent.gateway.cli_common import client_of


def read_cameras(path: Path) -> list[Any]:
    """The `cameras:` list of a YAML or JSON file holding only that section (ClickException)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise click.ClickException(f"{path}: cannot read: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise click.ClickException(f"{path}: expected a mapping with a `cameras:` list")
    extra = sorted(set(data) - {"cameras"})
    if extra:
        raise click.ClickException(
            f"{path}: only `cameras:` is pushed; remove {', '.join(extra)} (other sections live "
            "in the device's own config file)"
        )
    return data["cameras"]


@click.group("config")
def config_group() -> None:
    """Camera configs pushed to devices (signed; the device answers on config/state)."""


@config_group.command("push")
@click.argument("device")
@click.argument("file", type=EXISTING_FILE)
@shown_option(
    "--wait",
    "wait_s",
    type=float,
    default=30.0,
    help="Seconds to wait for the device's answer (0: do not wait).",
)
@click.pass_context
def config_push(ctx: click.Context, device: str, file: Path, wait_s: float) -> None:
    """Push FILE's `cameras:` section to DEVICE; exit 1 if the device rejects it."""
    cameras = read_cameras(file)
    with client_of(ctx) as client:
        sent = client.request("POST", f"/v1/devices/{device}/config", {"cameras": cameras})
        click.echo(f"pushed {sent['command_id']} (sequence {sent['sequence']}) to {device}")
        deadline = time.monotonic() + wait_s
        view: dict[str, Any] | None = None
        while wait_s > 0 and time.monotonic() < deadline:
            view = _push_view(client.devices(), device)
            if view is not None and view["last_push"] == sent["command_id"]:
                if view["result"] != "pending":
                    break
            time.sleep(0.5)
    if wait_s <= 0:
        return
    if view is None or view["last_push"] != sent["command_id"] or view["result"] == "pending":
        raise click.ClickException(f"no answer from {device} within {wait_s:g}s (still pending)")
    if view["result"] == "rejected":
        raise click.ClickException(f"{device} rejected it: {view['reason']}: {view['detail']}")
    click.echo(f"{device} applied it: config_sha256 {view['config_sha256']}")


def _push_view(devices: list[dict[str, Any]], device: str) -> dict[str, Any] | None:
    for v in devices:
        if v["device"] == device:
            push = v.get("config_push")
            return push if isinstance(push, dict) else None
    return None


def push_summary(v: dict[str, Any]) -> str:
    """`cfg <sha12> <last result>` for a line of `edge-gateway devices`."""
    sha = v.get("config_sha256")
    push = v.get("config_push") or {}
    result = push.get("result")
    text = f"cfg {sha[:12] if sha else '-'}"
    if result:
        text += f" push {result}" + (f" ({push['reason']})" if push.get("reason") else "")
    return text


__all__ = ["config_group", "push_summary", "read_cameras"]
