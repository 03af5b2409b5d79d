"""The shipped gateway broker config (configs/mosquitto/) running for real on a free port.

`ShippedMosquitto` renders configs/mosquitto/mosquitto.conf for a test: the same file with the
install paths pointed at a temporary directory, the listener moved to a free loopback port, the
log sent to a file, and (test only) no privilege drop. Every substitution must apply, so a change
to the shipped file that a test does not understand fails loudly instead of testing something
else.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from tests.helpers.broker import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "configs" / "mosquitto"
MAKE_CERTS = CONF_DIR / "make-certs.sh"


def make_certs(out: Path, *commands: list[str]) -> None:
    """Run configs/mosquitto/make-certs.sh for each command (e.g. ["device", "dev-a"])."""
    for cmd in commands:
        subprocess.run(
            ["bash", str(MAKE_CERTS), "-o", str(out), *cmd],
            check=True,
            capture_output=True,
            text=True,
        )


def fleet_certs(out: Path) -> Path:
    """A CA, a localhost server cert, devices dev-a and dev-b, the gateway, an operator and
    Home Assistant."""
    make_certs(
        out,
        ["ca"],
        ["server", "localhost", "127.0.0.1"],
        ["device", "dev-a"],
        ["device", "dev-b"],
        ["gateway"],
        ["operator"],
        ["homeassistant"],
    )
    return out


def client_context(certs: Path, name: str | None, ca: Path | None = None) -> ssl.SSLContext:
    """A TLS client context trusting `ca` (default: the fleet CA) with client cert `name`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca or certs / "ca.crt"))
    if name is not None:
        ctx.load_cert_chain(str(certs / f"{name}.crt"), str(certs / f"{name}.key"))
    return ctx


class ShippedMosquitto(Mosquitto):
    """Mosquitto running configs/mosquitto/mosquitto.conf and acl with certs from `certs`."""

    def __init__(self, workdir: Path, certs: Path, port: int | None = None) -> None:
        super().__init__(workdir, port=port or free_port(), listener=False)
        acl = workdir / "acl"
        shutil.copy(CONF_DIR / "acl", acl)
        text = (CONF_DIR / "mosquitto.conf").read_text()
        subs = {
            "listener 8883\n": f"listener {self.port} 127.0.0.1\n",
            "/etc/mosquitto/certs/": f"{certs}/",
            "/etc/mosquitto/acl\n": f"{acl}\n",
            "persistence_location /var/lib/mosquitto/\n": f"persistence_location {workdir}/\n",
            "log_dest syslog\n": f"log_dest file {self.log}\nlog_type all\n",
        }
        for old, new in subs.items():
            if old not in text:
                raise AssertionError(f"shipped mosquitto.conf no longer contains {old!r}")
            text = text.replace(old, new)
        # Run as root, as the test does: the Debian package drops to the `mosquitto` user, which
        # cannot enter pytest's private (0700) temporary directory to read the ACL and log.
        self.conf.write_text("user root\n" + text)
