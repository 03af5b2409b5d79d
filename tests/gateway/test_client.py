"""The CLI's admin credentials: `admin-token`, the token file and the environment variable."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.gateway.client import GatewayClientError, read_admin_token, save_admin_token
from tests.gateway.conftest import REPO, sha256_hex


def run_cli(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.gateway.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def test_admin_token_prints_token_and_its_hash_and_saves_it_0600(tmp_path: Path) -> None:
    """`admin-token` prints a token and the sha256 line of it, and writes the 0600 file."""
    config = tmp_path / "gateway.yaml"
    config.write_text(f"keys_dir: {tmp_path / 'keys'}\ndata_dir: {tmp_path / 'data'}\n")
    env = {k: v for k, v in os.environ.items() if k != "EDGE_GATEWAY_ADMIN_TOKEN"}
    out = run_cli(config, "admin-token", env=env).stdout
    token = re.search(r"admin token: (\S+)", out).group(1)  # type: ignore[union-attr]
    assert f"    - {sha256_hex(token)}" in out
    path = tmp_path / "keys" / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_admin_token(tmp_path / "keys") == token


def test_group_readable_token_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A token file readable by others is refused, naming the fix."""
    monkeypatch.delenv("EDGE_GATEWAY_ADMIN_TOKEN", raising=False)
    path = save_admin_token(tmp_path, "t0ken")
    path.chmod(0o644)
    with pytest.raises(GatewayClientError, match="chmod 600"):
        read_admin_token(tmp_path)


def test_environment_variable_wins_over_the_file(tmp_path: Path, monkeypatch) -> None:
    """$EDGE_GATEWAY_ADMIN_TOKEN is used when set."""
    save_admin_token(tmp_path, "from-file")
    monkeypatch.setenv("EDGE_GATEWAY_ADMIN_TOKEN", "from-env")
    assert read_admin_token(tmp_path) == "from-env"


def test_cli_without_a_token_says_how_to_make_one(tmp_path: Path) -> None:
    """A fleet command with no token anywhere exits 1 pointing at `admin-token`."""
    config = tmp_path / "gateway.yaml"
    config.write_text(f"keys_dir: {tmp_path / 'keys'}\ndata_dir: {tmp_path / 'data'}\n")
    env = {k: v for k, v in os.environ.items() if k != "EDGE_GATEWAY_ADMIN_TOKEN"}
    proc = run_cli(config, "devices", env=env)
    assert proc.returncode == 1 and "edge-gateway admin-token" in proc.stderr
