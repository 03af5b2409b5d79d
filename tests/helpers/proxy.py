"""A small TCP proxy on loopback for network faults: down (refuse), up (forward), black hole.

In `blackhole` mode existing connections stay open but every byte is swallowed in both
directions, like a cable pulled mid-session: only keepalive timeouts can notice it.
"""

from __future__ import annotations

import selectors
import socket
import threading

from tests.helpers.broker import free_port


class TcpProxy:
    """Proxy 127.0.0.1:`port` -> `target_host`:`target_port`.

    As a context manager it starts forwarding (`start_up=True`) or refusing connections
    (`start_up=False`, as if the broker's host were down) and closes everything on exit.
    """

    def __init__(
        self,
        target_port: int,
        port: int | None = None,
        target_host: str = "127.0.0.1",
        start_up: bool = True,
    ) -> None:
        self.start_up = start_up
        self.port = port or free_port()
        self.target = (target_host, target_port)
        self.mode = "down"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- modes ---------------------------------------------------------------------------
    def up(self) -> None:
        """Accept and forward connections."""
        with self._lock:
            self.mode = "up"
            if self._listener is None:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", self.port))
                s.listen(16)
                s.setblocking(False)
                self._listener = s
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def blackhole(self, on: bool = True) -> None:
        """Keep every connection open but forward nothing (new ones are accepted and starved);
        `blackhole(False)` delivers again."""
        if not on:
            self.up()
            return
        with self._lock:
            self.mode = "blackhole"

    def down(self) -> None:
        """Close the listener and every connection: new connects are refused."""
        with self._lock:
            self.mode = "down"
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for a, b in self._pairs:
                a.close()
                b.close()
            self._pairs.clear()

    def close(self) -> None:
        self.down()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    # -- forwarding ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
                pairs = list(self._pairs)
                mode = self.mode
            sel = selectors.DefaultSelector()
            try:
                if listener is not None:
                    sel.register(listener, selectors.EVENT_READ, None)
                for a, b in pairs:
                    sel.register(a, selectors.EVENT_READ, b)
                    sel.register(b, selectors.EVENT_READ, a)
            except (ValueError, OSError):
                sel.close()
                continue
            try:
                events = sel.select(timeout=0.05)
            except (ValueError, OSError):
                events = []
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data is None:
                    try:
                        client, _ = sock.accept()
                    except OSError:
                        continue
                    try:
                        upstream = socket.create_connection(self.target, timeout=2)
                    except OSError:
                        client.close()
                        continue
                    with self._lock:
                        self._pairs.append((client, upstream))
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                if mode == "up":
                    try:
                        key.data.sendall(data)
                    except OSError:
                        self._drop(sock)
            sel.close()

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            for pair in list(self._pairs):
                if sock in pair:
                    self._pairs.remove(pair)
                    for s in pair:
                        s.close()

    def __enter__(self) -> TcpProxy:
        if self.start_up:
            self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
