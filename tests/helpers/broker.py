"""A real Mosquitto broker on a free loopback port, owned by one test.

Used for every test that needs its own broker config, a restart, or a kill: the machine's
shared broker on 1883 is never stopped by a test.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range.

    A port the kernel picks with bind(0) lies in the range it also gives outgoing connections,
    so between this call and the server's bind a client socket (the server's own MQTT client,
    say) can take it: "address already in use". Ports below that range are handed out only on
    request, so a random one that binds now stays free unless another test asks for it.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 20000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # nothing free below the range: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class Mosquitto:
    """A mosquitto process with its own config file in `workdir`.

    `extra_conf` lines are appended to a minimal config (listener on the port, anonymous
    allowed unless the extra lines say otherwise, persistence off unless asked).
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_conf: str = "",
        persistence: bool = False,
        anonymous: bool = True,
        listener: bool = True,
    ) -> None:
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir = workdir
        self.port = port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = []
        if listener:
            lines.append(f"listener {self.port} 127.0.0.1")
            lines.append(f"allow_anonymous {'true' if anonymous else 'false'}")
        if os.geteuid() == 0 and not any(
            line.split()[:1] == ["user"] for line in extra_conf.splitlines()
        ):
            # as root, mosquitto drops to the `mosquitto` user, which cannot write into
            # pytest's private temp dirs (log, persistence): stay root for tests
            lines.append("user root")
        lines += [
            "max_queued_messages 0",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_type all",
            f"log_dest file {self.log}",
            extra_conf,
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop(signal.SIGKILL)
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"mosquitto did not start on {self.port}:\n{log[-2000:]}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(signal.SIGKILL)
