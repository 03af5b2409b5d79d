"""systemd/install.sh into a temporary root: user, dirs, units, configs, enable, uninstall."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.systemd.conftest import INSTALL_SH, stage_root

IS_ROOT = os.geteuid() == 0


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run install.sh with arguments; never against the real root."""
    assert "--root" in args or (env and "DESTDIR" in env), "tests must pass --root or DESTDIR"
    return subprocess.run(
        ["bash", str(INSTALL_SH), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under root with its mode and symlink target."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, os.readlink(p) if p.is_symlink() else "")
    return out


@pytest.fixture
def root(tmp_path: Path, systemd_tools: None) -> Path:
    """A staged root with the console scripts present."""
    return stage_root(tmp_path / "root")


def test_install_agent(root: Path) -> None:
    """The agent install creates user, dirs, config, unit and the enable symlink."""
    proc = install("--root", str(root), "agent")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    passwd = (root / "etc/passwd").read_text()
    assert "edge-agent:x:" in passwd and ":/var/lib/edge-agent:/usr/sbin/nologin" in passwd
    groups = {
        line.split(":")[0]: line.split(":")[3]
        for line in (root / "etc/group").read_text().splitlines()
    }
    assert "edge-agent" in groups["video"] and "edge-agent" in groups["render"]
    state = root / "var/lib/edge-agent"
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o750
    if IS_ROOT:
        uid = int(
            next(line for line in passwd.splitlines() if line.startswith("edge-agent:")).split(":")[
                2
            ]
        )
        assert state.stat().st_uid == uid
    assert (root / "etc/edge-agent/agent.yaml").is_file()
    assert (root / "etc/systemd/system/edge-agent.service").is_file()
    link = root / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
    assert os.readlink(link) == "/etc/systemd/system/edge-agent.service"
    assert (root / "usr/local/share/edge-agent/models/demo/model.onnx").is_file()


def test_installed_agent_unit_verifies(root: Path) -> None:
    """The unit as installed passes systemd-analyze verify inside that root."""
    assert install("--root", str(root), "agent").returncode == 0
    proc = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "edge-agent.service"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_install_gateway_with_destdir(root: Path) -> None:
    """The gateway installs the same way; DESTDIR works like --root."""
    proc = install("gateway", env={"DESTDIR": str(root)})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "edge-gateway:x:" in (root / "etc/passwd").read_text()
    assert (root / "etc/edge-gateway/gateway.yaml").is_file()
    assert (root / "etc/systemd/system/multi-user.target.wants/edge-gateway.service").is_symlink()
    assert not (root / "etc/systemd/system/edge-agent.service").exists()


def test_reinstall_keeps_edited_config(root: Path) -> None:
    """A second install never overwrites the operator's config; the example is refreshed."""
    assert install("--root", str(root), "agent").returncode == 0
    conf = root / "etc/edge-agent/agent.yaml"
    conf.write_text("# edited by the operator\n")
    proc = install("--root", str(root), "agent")
    assert proc.returncode == 0, proc.stderr
    assert conf.read_text() == "# edited by the operator\n"
    assert "keeping existing" in proc.stdout
    assert (
        (root / "etc/edge-agent/agent.yaml.example")
        .read_text()
        .startswith("# /etc/edge-agent/agent.yaml")
    )


def test_uninstall_keeps_data_then_purge_removes_it(root: Path) -> None:
    """--uninstall removes unit and enable link but keeps config/state; --purge deletes them."""
    assert install("--root", str(root), "agent").returncode == 0
    (root / "var/lib/edge-agent/outbox.sqlite3").write_bytes(b"queued detections")
    proc = install("--root", str(root), "--uninstall", "agent")
    assert proc.returncode == 0, proc.stderr
    assert not (root / "etc/systemd/system/edge-agent.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/edge-agent.service").is_symlink()
    assert not (root / "etc/sysusers.d/edge-agent.conf").exists()
    assert (root / "var/lib/edge-agent/outbox.sqlite3").exists()
    assert (root / "etc/edge-agent/agent.yaml").exists()
    proc = install("--root", str(root), "--uninstall", "--purge", "agent")
    assert proc.returncode == 0, proc.stderr
    assert not (root / "var/lib/edge-agent").exists() and not (root / "etc/edge-agent").exists()
    assert "edge-agent:x:" in (root / "etc/passwd").read_text()  # the user is kept


def test_dry_run_changes_nothing(root: Path) -> None:
    """--dry-run prints each action and leaves the root untouched (no systemctl, no sysusers)."""
    before = snapshot(root)
    proc = install("--root", str(root), "--dry-run", "agent")
    assert proc.returncode == 0, proc.stderr
    assert snapshot(root) == before
    assert "would run: systemctl --root=" in proc.stdout
    assert "would run: systemd-sysusers" in proc.stdout
    assert "\n+ " not in "\n" + proc.stdout


def test_missing_binary_is_an_error(tmp_path: Path, systemd_tools: None) -> None:
    """Without the installed console script the installer refuses, saying what to do."""
    root = tmp_path / "empty"
    root.mkdir()
    proc = install("--root", str(root), "agent")
    assert proc.returncode == 1
    assert "install the Python package first" in proc.stderr
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "say which service"),  # no component
        (["agent", "gateway"], "give one component"),  # two components
        (["--purge", "agent"], "--purge only goes with --uninstall"),
        (["--bogus", "agent"], "unknown argument: --bogus"),
        (["--config", "/nonexistent.yaml", "agent"], "missing /nonexistent.yaml"),
    ],
)
def test_bad_arguments(root: Path, args: list[str], message: str) -> None:
    """Bad invocations exit 1 with a message and change nothing."""
    before = snapshot(root)
    proc = install("--root", str(root), *args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert snapshot(root) == before


def test_install_script_lints_clean() -> None:
    """install.sh parses with bash -n and, where shellcheck is installed, passes it."""
    assert subprocess.run(["bash", "-n", str(INSTALL_SH)], timeout=30).returncode == 0
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    proc = subprocess.run([exe, str(INSTALL_SH)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
