"""`edge-agent run`: wires sources, engine, publisher, health and OTA into the daemon."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("configs/agent.yaml"),
    show_default=True,
    help="Agent config file (YAML).",
)
def run_command(config_path: Path) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    raise click.ClickException("not implemented yet")
