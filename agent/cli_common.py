"""What the `edge-agent` sub-commands share: the `--config` option, problem lists, the
one-line error exit. Only click here: every command keeps its heavy imports to itself."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

DEFAULT_CONFIG = Path("configs/agent.yaml")
"""The agent config a command reads when none is named."""

F = TypeVar("F", bound=Callable[..., Any])


def config_option(help_text: str) -> Callable[[F], F]:
    """`--config` (into `config_path`), defaulting to `DEFAULT_CONFIG`."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        help=help_text,
    )


def echo_problems(header: str, problems: Iterable[str]) -> None:
    """Print `header`, then each problem indented on its own line, to stderr."""
    click.echo(header, err=True)
    for p in problems:
        click.echo(f"  {p}", err=True)


def fail(command: str, message: str) -> NoReturn:
    """Print `edge-agent <command>: error: <message>` to stderr and exit 1."""
    click.echo(f"edge-agent {command}: error: {message}", err=True)
    sys.exit(1)
