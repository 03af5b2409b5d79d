"""`edge-agent` console command: run, demo, check-config, label, train, eval, engine, florence.

Each sub-command lives beside the code it drives; this module only assembles them.
Heavy imports (OpenCV, ONNX Runtime, torch) happen inside the commands, never at import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.cli_common import DEFAULT_CONFIG, console_group, echo_problems, root_config


@console_group(
    "edge-agent",
    default=None,
    help=f"Agent config file (YAML), before or after the command [default: {DEFAULT_CONFIG}].",
)
def main() -> None:
    """Edge vision agent: camera streams -> YOLO -> MQTT detections."""


@main.command("check-config")
@click.argument("config", type=click.Path(path_type=Path), required=False)
def check_config(config: Path | None) -> None:
    """Validate CONFIG (default: --config) and print every problem with its field path."""
    from agent.config import ConfigError, load_config

    config = config or root_config()

    try:
        cfg = load_config(config)
    except ConfigError as err:
        echo_problems(f"{config}: {len(err.problems)} problem(s)", err.problems)
        sys.exit(1)
    click.echo(f"{config}: OK (device {cfg.device.id}, {len(cfg.cameras)} camera(s))")


def _register() -> None:
    """Attach the sub-commands that live beside their code (no heavy imports happen here)."""
    from agent.daemon import run_command
    from agent.demo import demo_command
    from agent.engines.build_cli import engine_group
    from agent.evaluation.cli import eval_command
    from agent.fallback.cli import florence_group
    from agent.label.cli import label_command
    from agent.train.cli import train_command

    commands = (run_command, demo_command, label_command, train_command, eval_command)
    for command in (*commands, engine_group, florence_group):
        main.add_command(command)


_register()
