"""A real RTSP server for tests: start, stop (kill), freeze (SIGSTOP), resume, restart.

The server is GStreamer's (`tests/helpers/rtsp_server.py`, run by Debian's `/usr/bin/python3`
where `gi` lives). It serves an H.264 MP4 in a loop at `rtsp://127.0.0.1:<port>/live`; a
restart keeps the port, so a daemon configured with the URL reconnects to the same address.
`scaled_clip` makes a smaller variant of the demo clip to change resolution across a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers.broker import free_port
from tests.helpers.daemon import DEMO_CLIP

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)


def rtsp_available() -> str | None:
    """None when the GStreamer RTSP server can run here, else why not."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"GStreamer RTSP server not importable (Debian: apt-get install {PACKAGES})"
    return None


def require_rtsp() -> None:
    """Fail (not skip: scripts/test.sh installs the packages) when the server cannot run."""
    why = rtsp_available()
    if why is not None:
        pytest.fail(why)


def scaled_clip(dst: Path, width: int, height: int, fps: int = 10, src: Path = DEMO_CLIP) -> Path:
    """Write `src` scaled to `width` x `height` at `fps` (H.264 MP4) at `dst`, once; return
    `dst` (the demo clip is 768x576 at 10 fps)."""
    if not dst.exists():
        tmp = dst.with_suffix(".part.mp4")
        subprocess.run(
            [
                SYSTEM_PYTHON,
                str(SERVER_SCRIPT),
                "scale",
                str(src),
                str(tmp),
                str(width),
                str(height),
                str(fps),
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        tmp.replace(dst)
    return dst


class RtspServer:
    """One GStreamer RTSP server process on a fixed port; `start` again after `kill`."""

    def __init__(self, clip: Path | str = DEMO_CLIP, port: int | None = None) -> None:
        """`clip`: an H.264 MP4 served in a loop, or `test:WxH@FPS` for a live test pattern
        at exactly FPS (a re-encoded MP4 does not loop cleanly: the stream breaks at its end)."""
        self.clip = clip
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in kill()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self, clip: Path | str | None = None) -> RtspServer:
        """Start serving (`clip` replaces the served file); returns once it listens."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the RTSP server is already running")
        if clip is not None:
            self.clip = clip
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "serve", str(self.port), str(self.clip)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready" once bound (or EOF if it died)
        if line.strip() != "ready":
            self.proc.wait(10)
            self._stderr.seek(0)
            err = self._stderr.read()
            raise RuntimeError(f"RTSP server did not start on port {self.port}: {err[-500:]}")
        return self

    def kill(self) -> None:
        """Kill the server at once (SIGKILL, as a crash); `start` serves again on the port."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process must be able to die
            self.proc.kill()
            self.proc.wait(10)
        self._close_pipes()

    def freeze(self) -> None:
        """SIGSTOP: the socket stays open but nothing is sent (a wedged camera)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `freeze`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
