"""Fixtures for the unit-file and installer tests: systemd's offline tools, a staged root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
INSTALL_SH = SYSTEMD_DIR / "install.sh"
SYSTEM_TOOLS = ("/bin/kill",)


@pytest.fixture(scope="session")
def systemd_tools() -> None:
    """systemd-analyze, systemctl and systemd-sysusers; installed from Debian when missing."""
    needed = ("systemd-analyze", "systemctl", "systemd-sysusers")
    if all(shutil.which(t) for t in needed):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{needed} missing and cannot apt-get install systemd here (not root/Debian)")
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", "systemd"], check=True, timeout=600)
    missing = [t for t in needed if not shutil.which(t)]
    assert not missing, f"still missing after apt-get install systemd: {missing}"


def stage_root(root: Path, binaries: tuple[str, ...] = ("edge-agent", "edge-gateway")) -> Path:
    """A fake filesystem root: our console scripts as executables, the system's unit files.

    The binaries are copies of the real console scripts when installed (else a stub), so
    `systemd-analyze verify --root` can check ExecStart without touching /usr/local/bin.
    """
    bin_dir = root / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in binaries:
        real = shutil.which(name)
        target = bin_dir / name
        if real:
            shutil.copyfile(real, target)
        else:
            target.write_text("#!/bin/sh\nexit 0\n")
        target.chmod(0o755)
    for tool in SYSTEM_TOOLS:  # system binaries the units run (ExecReload=/bin/kill)
        target = root / tool.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(tool, target)
            target.chmod(0o755)
    units = Path("/usr/lib/systemd/system")
    if units.is_dir():
        shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    return root
