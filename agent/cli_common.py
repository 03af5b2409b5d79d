"""What the console commands share: the group with its `--config` option, problem lists, the
one-line error exit. Only click here: every command keeps its heavy imports to itself.

`--config` is accepted before and after the sub-command, for `edge-agent` and
`edge-gateway` alike (`ConfigAnywhere`): `edge-agent --config X run` = `edge-agent run --config X`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from agent import __version__
from agent.util.near_duplicate import DEFAULT_MIN_CHANGE

DEFAULT_CONFIG = Path("configs/agent.yaml")
"""The agent config a command reads when none is named."""

F = TypeVar("F", bound=Callable[..., Any])

EXISTING_FILE = click.Path(path_type=Path, exists=True, dir_okay=False)
"""The type of an argument or option naming a file that must exist (a model, a key, a YAML)."""


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


def console_group(prog_name: str, **config: Any) -> Callable[[Callable[[], None]], click.Group]:
    """Decorator making a console command's group (`edge-agent`, `edge-gateway`) of a function
    whose docstring is its help: `-h`/`--help`, `--version`, and `--config` (into
    `ctx.obj["config_path"]`, accepted before or after the sub-command; `config` are its
    `default`, `show_default` and `help`)."""

    def decorate(described: Callable[[], None]) -> click.Group:
        def main(ctx: click.Context, config_path: Path | None) -> None:
            ctx.ensure_object(dict)
            ctx.obj["config_path"] = config_path

        main.__doc__ = described.__doc__
        options = click.option("--config", "config_path", type=click.Path(path_type=Path), **config)
        group = click.group(
            cls=ConfigAnywhere, context_settings={"help_option_names": ["-h", "--help"]}
        )
        version = click.version_option(__version__, prog_name=prog_name)
        return group(version(options(click.pass_context(main))))

    return decorate


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


def shown_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """`click.option` with `show_default=True`: an option whose `--help` shows its default."""
    return click.option(*decls, show_default=True, **attrs)


def out_option(help_text: str, *, short: bool = True, file: bool = False) -> Callable[[F], F]:
    """The required output of a command that writes something: `-o/--out` (`--out` alone
    when not `short`), a path (a file's, not a directory's, when `file`)."""
    names = ("-o", "--out") if short else ("--out",)
    type_ = click.Path(dir_okay=False, path_type=Path) if file else click.Path(path_type=Path)
    return click.option(*names, required=True, type=type_, help=help_text)


# -- how a dataset is split and thinned: the same options for `edge-agent label` and
# `edge-gateway dataset build` (each command says what they mean for its input)


def val_fraction_option(help_text: str | None = None) -> Callable[[F], F]:
    """`--val-fraction`: the share held out for validation (0 <= x < 1, default 0.2)."""
    range_ = click.FloatRange(0.0, 1.0, max_open=True)
    return shown_option("--val-fraction", default=0.2, type=range_, help=help_text)


def gap_option(default: float, help_text: str) -> Callable[[F], F]:
    """`--gap` (into `gap_s`): seconds of frames that keep train and val apart."""
    range_ = click.FloatRange(min=0.0)
    return shown_option("--gap", "gap_s", default=default, type=range_, help=help_text)


def min_change_option(help_text: str) -> Callable[[F], F]:
    """`--min-change`: the near-duplicate threshold (`agent.util.near_duplicate`)."""
    range_ = click.FloatRange(min=0.0)
    return shown_option("--min-change", default=DEFAULT_MIN_CHANGE, type=range_, help=help_text)


def progress_option() -> Callable[[F], F]:
    """`--progress/--no-progress`: a progress bar on stderr (on by default)."""
    return click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")


@contextmanager
def click_errors(*errors: type[Exception]) -> Iterator[None]:
    """Turn any of `errors` raised inside into a ClickException of its message (exit 1)."""
    try:
        yield
    except errors as err:
        raise click.ClickException(str(err)) from None


def echo_problems(header: str, problems: Iterable[str]) -> None:
    """Print `header`, then each problem indented on its own line, to stderr."""
    click.echo(header, err=True)
    for p in problems:
        click.echo(f"  {p}", err=True)


def fail(command: str, message: str) -> NoReturn:
    """Print `edge-agent <command>: error: <message>` to stderr and exit 1."""
    click.echo(f"edge-agent {command}: error: {message}", err=True)
    sys.exit(1)
