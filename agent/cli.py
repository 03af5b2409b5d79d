"""`edge-agent` console command: run, demo, check-config, label, train, eval, engine, florence.

Each sub-command lives beside the code it drives; this module only assembles them.
Heavy imports (OpenCV, ONNX Runtime, torch) happen inside the commands, never at import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent import __version__
from agent.cli_common import DEFAULT_CONFIG, echo_problems


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-agent")
def main() -> None:
    """Edge vision agent: camera streams -> YOLO -> MQTT detections."""


@main.command("check-config")
@click.argument("config", type=click.Path(path_type=Path), default=DEFAULT_CONFIG)
def check_config(config: Path) -> None:
    """Validate CONFIG and print every problem with its field path (exit 1 if any)."""
    from agent.config import ConfigError, load_config

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
