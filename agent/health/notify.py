"""sd_notify over $NOTIFY_SOCKET (stdlib only): READY, STATUS, WATCHDOG, STOPPING.

Without $NOTIFY_SOCKET (not under systemd) every call is a no-op, decided once at
construction rather than on every call.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    """Sends sd_notify datagrams to the socket systemd gave us, if any."""

    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        self._addr: str | bytes | None = None
        if addr:
            if addr.startswith("@"):  # abstract namespace socket
                self._addr = "\0" + addr[1:]
            else:
                self._addr = addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between pings systemd expects (half of WatchdogSec), or None."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 1e6 / 2
        except ValueError:
            return None

    def _send(self, message: str) -> None:
        if self._sock is None or self._addr is None:
            return
        try:
            self._sock.sendto(message.encode(), self._addr)
        except OSError as err:
            log.warning("sd_notify failed", error=str(err), message=message.split("=")[0])

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
