"""What every `edge-gateway` command shares: the config of the click context and the client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from agent.cli_common import click_errors
from agent.gateway.config import GatewayConfig, GatewayConfigError, load_gateway_config

CONFIG_ENV = "EDGE_GATEWAY_CONFIG"


def config_of(ctx: click.Context) -> GatewayConfig:
    """The validated config named by `--config`, or a ClickException listing the problems."""
    path: Path = ctx.obj["config_path"]
    try:
        return load_gateway_config(path)
    except GatewayConfigError as err:
        lines = "\n".join(f"  {p}" for p in err.problems)
        if any(p.startswith("cannot read file") for p in err.problems):
            lines += (
                f"\n  name the config with --config PATH (before or after the command) or "
                f"${CONFIG_ENV}"
            )
        raise click.ClickException(f"{path}: {len(err.problems)} problem(s)\n{lines}") from None


@contextmanager
def gateway_errors() -> Iterator[None]:
    """Turn a GatewayClientError into a ClickException (exit code 1, the server's words)."""
    from agent.gateway.client import GatewayClientError

    with click_errors(GatewayClientError):
        yield


@contextmanager
def client_of(ctx: click.Context):  # noqa: ANN201 - a context manager of GatewayClient
    """A GatewayClient for the running gateway of this config; errors become ClickExceptions."""
    from agent.gateway.client import GatewayClient

    cfg = config_of(ctx)
    with gateway_errors():
        client = GatewayClient.from_config(cfg)
        try:
            yield client
        finally:
            client.close()
