"""A real HTTP artifact server on loopback with fault modes, for OTA download tests.

Serves byte strings registered under paths, honouring `Range: bytes=N-` with 206. The fault
of each path is chosen at registration:

* ``ok``        - honest server;
* ``truncate``  - announces the full Content-Length, sends half, closes (every time);
* ``flip``      - one byte flipped at ``flip_at``;
* ``oversize``  - no Content-Length, sends the artifact plus ``extra`` bytes, then closes;
* ``drip``      - sends one byte per ``drip_s`` seconds;
* ``stall``     - sends a few bytes, then nothing for ``stall_s`` seconds;
* ``reset``     - the first request sends ``reset_at`` bytes then resets the connection
                  (TCP RST); later requests are honest (Range resume);
* ``status``    - answers with HTTP ``status``;
* ``slow``      - honest, at ``rate`` bytes per second (to catch a download in progress).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Artifact:
    data: bytes
    fault: str = "ok"
    flip_at: int = 0
    extra: int = 1 << 20
    drip_s: float = 1.0
    stall_s: float = 30.0
    reset_at: int = 0
    status: int = 404
    rate: float = 1e6
    requests: list[str | None] = field(default_factory=list)  # Range header of each request


class ArtifactServer:
    """ThreadingHTTPServer on 127.0.0.1:<free port>, in a daemon thread; a context manager."""

    def __init__(self) -> None:
        self.artifacts: dict[str, Artifact] = {}
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:  # noqa: N802
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, data: bytes, fault: str = "ok", **kw: object) -> str:
        self.artifacts["/" + path.lstrip("/")] = Artifact(data, fault, **kw)  # type: ignore[arg-type]
        return self.url(path)

    def __enter__(self) -> ArtifactServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- serving ---------------------------------------------------------------------------
    def _write(self, h: BaseHTTPRequestHandler, data: bytes) -> None:
        h.wfile.write(data)
        h.wfile.flush()
        self.sent += len(data)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        art = self.artifacts.get(h.path)
        if art is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        rng = h.headers.get("Range")
        art.requests.append(rng)
        first = len(art.requests) == 1
        data = art.data
        if art.fault == "flip":
            b = bytearray(data)
            b[art.flip_at] ^= 0xFF
            data = bytes(b)
        if art.fault == "status":
            h.send_response(art.status)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if art.fault == "oversize":
            h.close_connection = True
            h.send_response(200)
            h.send_header("Connection", "close")
            h.end_headers()
            try:
                self._write(h, data)
                self._write(h, b"\0" * art.extra)
            except OSError:
                return
            return
        start = 0
        if rng and rng.startswith("bytes=") and art.fault != "truncate":
            start = int(rng[6:].split("-", 1)[0])
        body = data[start:]
        if start:
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            if art.fault == "truncate":
                self._write(h, body[: len(body) // 2])
                h.close_connection = True
                return
            if art.fault == "reset" and first:
                self._write(h, body[: art.reset_at])
                h.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                h.close_connection = True
                return
            if art.fault == "drip":
                for i in range(len(body)):
                    self._write(h, body[i : i + 1])
                    time.sleep(art.drip_s)
                return
            if art.fault == "slow":
                step = max(1, int(art.rate / 20))
                for i in range(0, len(body), step):
                    self._write(h, body[i : i + step])
                    time.sleep(step / art.rate)
                return
            if art.fault == "stall":
                self._write(h, body[:16])
                time.sleep(art.stall_s)
                h.close_connection = True
                return
            self._write(h, body)
        except OSError:
            h.close_connection = True
