"""`edge-gateway` run in-process (click's runner) with the test admin token: the real CLI code,
without a new interpreter per call (the review tests make many calls)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from agent.gateway.cli import main
from tests.gateway.conftest import ADMIN_TOKEN


def run(config: Path, *args: str, check: bool = True) -> Result:
    """`edge-gateway --config CONFIG ARGS...`; AssertionError when `check` and it fails."""
    runner = CliRunner(env={"EDGE_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN})
    result = runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    if check and result.exit_code != 0:
        raise AssertionError(f"edge-gateway {' '.join(args)} failed:\n{result.output}")
    return result
