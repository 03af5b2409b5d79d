"""What the `edge-agent` sub-commands share: the `--config` option, problem lists, the
one-line error exit. Only click here: every command keeps its heavy imports to itself.

`--config` is accepted before and after the sub-command, for `edge-agent` and
`edge-gateway` alike (`ConfigAnywhere`): `edge-agent --config X run` = `edge-agent run --config X`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

DEFAULT_CONFIG = Path("configs/agent.yaml")
"""The agent config a command reads when none is named."""

F = TypeVar("F", bound=Callable[..., Any])


def hoist_option(args: list[str], name: str = "--config") -> list[str]:
    """`args` with every `NAME VALUE` / `NAME=VALUE` moved to the front, so the group reads it
    wherever it was typed (pure; nothing after `--` moves)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg == name and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        (front if arg.startswith(name + "=") else rest).append(arg)
        i += 1
    return front + rest


class ConfigAnywhere(click.Group):
    """A click group whose `--config` may also follow the sub-command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_option(args))


def root_config(default: Path = DEFAULT_CONFIG) -> Path:
    """The `--config` given to the group (wherever typed), else `default`."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    path = (obj or {}).get("config_path") if isinstance(obj, dict) else None
    return Path(path) if path is not None else default


def config_option(help_text: str) -> Callable[[F], F]:
    """`--config` (into `config_path`): before or after the sub-command, else `DEFAULT_CONFIG`."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        callback=lambda _ctx, _param, value: value if value is not None else root_config(),
        show_default=str(DEFAULT_CONFIG),
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
