"""`edge-gateway` console command: the click group, keys, models, serve.

Registry and key commands (`keys`, `models add/list`) work on local files, with or without a
running server. Everything the server owns (devices and enrolment, rollouts, deploy, abort)
goes through its admin API with one client (`agent.gateway.client.GatewayClient`): those
commands are in `agent.gateway.cli_fleet`; `watch` is in `agent.gateway.cli_watch`. Other
modules add commands with `main.add_command(...)`. Heavy or optional imports happen inside the
commands.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from agent.cli_common import EXISTING_FILE, click_errors, console_group
from agent.gateway import cli_config, cli_dataset, cli_fleet, cli_watch
from agent.gateway.cli_common import CONFIG_ENV, config_of
from agent.gateway.config import (
    DEFAULT_CONFIG_PATH,
)
from agent.gateway.signing_cli import (
    model_options,
    parse_compat,
    parse_size,
    release_options,
)
from agent.gateway.signing_cli import register as register_signing

_config = config_of


@console_group(
    "edge-gateway",
    default=lambda: os.environ.get(CONFIG_ENV, str(DEFAULT_CONFIG_PATH)),
    show_default=f"${CONFIG_ENV} or {DEFAULT_CONFIG_PATH}",
    help="Gateway config file (YAML), before or after the command.",
)
def main() -> None:
    """Edge gateway: model registry, signed OTA rollouts, fleet view, dataset intake."""


# -- keys ------------------------------------------------------------------------------------


@main.group("keys")
def keys_group() -> None:
    """Create the release and gateway keys; export their public halves for device configs."""


# `keys init|export` and `models sign|import` live in agent.gateway.signing_cli


# -- models ----------------------------------------------------------------------------------


@main.group("models")
def models_group() -> None:
    """The model registry."""


@models_group.command("add")
@click.argument("file", type=EXISTING_FILE)
@model_options("Class names: 'a,b,c' or a file, one per line. Default: the ONNX/engine metadata.")
@release_options
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
    expires_days: float,
    generation: int,
    kind: str,
) -> None:
    """Store FILE (content-addressed), write and sign its manifest HERE: for a single-box lab
    that keeps the release key on the gateway. In production sign on the workstation (`models
    sign`) and `models import` here."""
    from agent.gateway.db import Store
    from agent.gateway.keys import KeyFileError, KeyRole, load_key
    from agent.gateway.registry import RegistryError, add_model, expires_after, parse_labels

    cfg = _config(ctx)
    compat = parse_compat(min_tensorrt, gpu_arch)
    with click_errors(RegistryError, KeyFileError):
        key = load_key(cfg.keys_dir, KeyRole.RELEASE)
        names = parse_labels(labels) if labels else None
        expires = expires_after(expires_days, time.time())
        with Store(cfg.db_path) as store:
            row = add_model(
                store,
                cfg.artifacts_dir,
                key,
                file,
                name=name,
                version=version,
                labels=names,
                input_size=parse_size(imgsz),
                compat=compat,
                expires=expires,
                kind=kind,  # type: ignore[arg-type]
                generation=generation,
            )
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
    with click_errors(KeyFileError):
        serve(cfg)


for _command in (
    *cli_fleet.COMMANDS,
    cli_watch.watch,
    cli_config.config_group,
    cli_dataset.dataset_group,
):
    main.add_command(_command)


register_signing(keys_group, models_group)

if __name__ == "__main__":
    main()
