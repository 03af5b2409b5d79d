"""A small TCP proxy for network-cut tests: forwards, or black-holes, loopback connections.

In black-hole mode both directions are read and discarded and new connections are accepted and
swallowed too: to both ends it looks like a network that stopped delivering packets, not like a
closed connection (which would be noticed at once).
"""

from __future__ import annotations

import selectors
import socket
import threading

from tests.helpers.broker import free_port


class TcpProxy:
    """Proxy 127.0.0.1:`port` -> 127.0.0.1:`upstream_port`, one thread, selectors."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._peer: dict[socket.socket, socket.socket] = {}
        self.blackholed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def blackhole(self, on: bool) -> None:
        """Stop (True) or resume (False) delivering bytes; connections stay open."""
        if on:
            self.blackholed.set()
        else:
            self.blackholed.clear()

    def _close_pair(self, s: socket.socket) -> None:
        other = self._peer.pop(s, None)
        for x in (s, other):
            if x is None:
                continue
            self._peer.pop(x, None)
            try:
                self._sel.unregister(x)
            except (KeyError, ValueError):
                pass
            x.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.05):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if s is self._listener:
                    client, _ = self._listener.accept()
                    try:
                        up = socket.create_connection(("127.0.0.1", self.upstream_port), 1.0)
                    except OSError:
                        client.close()
                        continue
                    for x in (client, up):
                        x.setblocking(False)
                        self._sel.register(x, selectors.EVENT_READ, None)
                    self._peer[client], self._peer[up] = up, client
                    continue
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._close_pair(s)
                    continue
                if self.blackholed.is_set():
                    continue  # swallowed
                other = self._peer.get(s)
                if other is not None:
                    try:
                        other.setblocking(True)
                        other.sendall(data)
                        other.setblocking(False)
                    except OSError:
                        self._close_pair(s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for s in list(self._peer):
            self._close_pair(s)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
