"""The unit files: required settings, consistency with the code, verify, security exposure."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.systemd.conftest import SYSTEMD_DIR, stage_root

AGENT_UNIT = SYSTEMD_DIR / "edge-agent.service"
GATEWAY_UNIT = SYSTEMD_DIR / "edge-gateway.service"
OK_LEVELS = ("PERFECT", "SAFE", "OK")  # systemd-analyze security levels at most "OK"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Unit file -> {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: setting outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


AGENT = parse_unit(AGENT_UNIT)
GATEWAY = parse_unit(GATEWAY_UNIT)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("Service", "Type", "notify"),  # READY=1 from the daemon
        ("Service", "NotifyAccess", "main"),  # only the daemon may notify
        ("Service", "WatchdogSec", "30s"),  # WATCHDOG=1 while frames flow
        ("Service", "Restart", "on-failure"),
        ("Unit", "StartLimitIntervalSec", "0"),  # retries for hours, never gives up
        ("Service", "RestartSec", "30s"),
        ("Service", "MemoryMax", "5G"),  # Orin Nano 8 GB (docs/jetson.md)
        ("Service", "TasksMax", "512"),
        ("Service", "User", "edge-agent"),  # never root
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ReadWritePaths", "/var/lib/edge-agent"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "DevicePolicy", "closed"),
        ("Service", "CapabilityBoundingSet", ""),  # no capabilities at all
    ],
)
def test_agent_unit_setting(section: str, key: str, value: str) -> None:
    """The agent unit carries each setting the daemon's contract needs."""
    assert AGENT[section].get(key) == [value]


@pytest.mark.parametrize("key", ["After", "Wants", "PartOf"])
def test_agent_unit_follows_nvargus_daemon(key: str) -> None:
    """The agent starts after nvargus-daemon, pulls it in and restarts with it (Argus socket)."""
    values = " ".join(AGENT["Unit"].get(key, [])).split()
    assert "nvargus-daemon.service" in values


@pytest.mark.parametrize(
    "device",
    [
        "char-video4linux rw",  # USB/V4L2 cameras
        "char-nvhost* rw",  # Jetson GPU/VIC/ISP host1x nodes by group
        "char-nvmap rw",  # Jetson memory allocator
        "/dev/nvmap rw",
        "/dev/nvhost-ctrl-gpu rw",
        "char-nvidia* rw",  # discrete NVIDIA GPUs (nvidia, nvidia-uvm, nvidia-caps...)
        "/dev/nvidiactl rw",
    ],
)
def test_agent_unit_allows_camera_and_gpu(device: str) -> None:
    """DevicePolicy=closed is opened exactly for cameras and NVIDIA nodes."""
    assert device in AGENT["Service"]["DeviceAllow"]


def test_agent_unit_keeps_devices_visible() -> None:
    """No PrivateDevices= in the agent: it would hide the camera and the GPU."""
    assert "PrivateDevices" not in AGENT["Service"]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("Service", "Type", "exec"),
        ("Service", "Restart", "on-failure"),
        ("Unit", "StartLimitBurst", "5"),
        ("Service", "User", "edge-gateway"),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ReadWritePaths", "/var/lib/edge-gateway"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "PrivateDevices", "yes"),  # the gateway needs no device
        ("Service", "DevicePolicy", "closed"),
    ],
)
def test_gateway_unit_setting(section: str, key: str, value: str) -> None:
    """The gateway unit is hardened and restarts on failure."""
    assert GATEWAY[section].get(key) == [value]


def test_agent_paths_match_the_code() -> None:
    """ExecStart uses the real `run --config`; the writable path is the default state dir."""
    from agent.cli import main
    from agent.config import DeviceConfig

    argv = shlex.split(AGENT["Service"]["ExecStart"][0])
    assert argv[0] == "/usr/local/bin/edge-agent"
    assert argv[1:3] == ["run", "--config"] and argv[3] == "/etc/edge-agent/agent.yaml"
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0 and "--config" in result.output
    default_state = DeviceConfig.model_fields["state_dir"].default
    assert AGENT["Service"]["ReadWritePaths"] == [str(default_state)]


def test_gateway_paths_match_the_code() -> None:
    """The gateway's ExecStart config path and writable dir are the gateway config's defaults."""
    from agent.gateway.config import DEFAULT_CONFIG_PATH, GatewayConfig

    argv = shlex.split(GATEWAY["Service"]["ExecStart"][0])
    assert argv == ["/usr/local/bin/edge-gateway", "--config", str(DEFAULT_CONFIG_PATH), "serve"]
    assert GATEWAY["Service"]["ReadWritePaths"] == [
        str(GatewayConfig.model_fields["data_dir"].default)
    ]


def test_gateway_cli_has_config_and_serve() -> None:
    """`edge-gateway --config FILE serve` parses as the unit calls it."""
    from agent.gateway import cli

    argv = shlex.split(GATEWAY["Service"]["ExecStart"][0])[1:]
    result = CliRunner().invoke(cli.main, [*argv[:-1], argv[-1], "--help"])
    assert result.exit_code == 0 and "Run the gateway" in result.output, result.output
    top = CliRunner().invoke(cli.main, ["--help"])
    assert "--config" in top.output


def test_example_agent_config_validates() -> None:
    """The example config install.sh puts in /etc/edge-agent validates against AgentConfig."""
    from agent.config import parse_config

    path = SYSTEMD_DIR / "examples/agent.yaml"
    cfg = parse_config(yaml.safe_load(path.read_text()), path)
    assert cfg.device.state_dir == Path("/var/lib/edge-agent")
    assert cfg.model.engine.type == "tensorrt"


def test_example_gateway_config_validates() -> None:
    """The example gateway config validates against GatewayConfig."""
    from agent.gateway.config import GatewayConfig

    cfg = GatewayConfig.model_validate(
        yaml.safe_load((SYSTEMD_DIR / "examples/gateway.yaml").read_text())
    )
    assert cfg.data_dir == Path("/var/lib/edge-gateway")


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify --root ROOT UNIT`."""
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", unit],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("unit", [AGENT_UNIT, GATEWAY_UNIT])
def test_systemd_analyze_verify(systemd_tools: None, tmp_path: Path, unit: Path) -> None:
    """Each unit passes `systemd-analyze verify` with its ExecStart binary present, silently."""
    root = stage_root(tmp_path / "root")
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copyfile(unit, root / "etc/systemd/system" / unit.name)
    proc = verify(root, unit.name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("User=edge-agent", "User=edge-agent\nWatchdogSecs=30s"), "Unknown key 'WatchdogSecs'"),
        (("/usr/local/bin/edge-agent", "/usr/local/bin/edge-agentx"), "is not executable"),
    ],
)
def test_verify_catches_broken_units(
    systemd_tools: None, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    """The verify check fails for a typo or a missing binary (so the test above can fail)."""
    root = stage_root(tmp_path / "root")
    (root / "etc/systemd/system").mkdir(parents=True)
    broken = AGENT_UNIT.read_text().replace(*edit)
    (root / "etc/systemd/system/edge-agent.service").write_text(broken)
    proc = verify(root, "edge-agent.service")
    assert message in proc.stderr


def exposure(unit: Path) -> tuple[float, str]:
    """(score, level) from `systemd-analyze security --offline=true UNIT`."""
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", proc.stdout)
    assert m, proc.stdout[-500:] + proc.stderr
    return float(m.group(1)), m.group(2)


@pytest.mark.parametrize(
    ("unit", "recorded"),
    [
        (AGENT_UNIT, 1.6),  # docs/jetson.md records 1.6 OK (systemd 252)
        (GATEWAY_UNIT, 1.1),  # docs/jetson.md records 1.1 OK (systemd 252)
    ],
)
def test_security_exposure_at_most_ok(systemd_tools: None, unit: Path, recorded: float) -> None:
    """`systemd-analyze security` rates each unit at most "OK", and no worse than documented."""
    score, level = exposure(unit)
    assert level in OK_LEVELS, (score, level)
    assert score <= recorded, f"{unit.name} exposure {score} worse than the documented {recorded}"


def test_security_check_can_fail(systemd_tools: None, tmp_path: Path) -> None:
    """An unhardened unit scores worse than OK (so the exposure test above can fail)."""
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    score, level = exposure(bare)
    assert level not in OK_LEVELS and score > 5
