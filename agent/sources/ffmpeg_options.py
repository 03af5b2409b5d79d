"""OpenCV's FFmpeg capture options, shared by every RTSP open in the process.

OpenCV reads `OPENCV_FFMPEG_CAPTURE_OPTIONS` from the environment while it opens a capture, so
cameras that need different options (e.g. `rtsp_transport;tcp` and `;udp`) must not open at the
same time. A plain lock around the open is not enough: an FFmpeg open that hangs past its
timeout (it happens: a server that accepts and then stalls in the handshake) would hold it for
ever, and every other camera of the daemon could never reconnect. `OptionsGate` lets opens that
need the *same* value run concurrently (a hung one blocks nobody with that value) and makes an
open with another value wait, bounded, until those in flight return.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class OptionsBusyError(Exception):
    """Opens with other FFmpeg options are still in flight (possibly hung)."""


class OptionsGate:
    """Sets an environment variable for the duration of concurrent opens needing one value."""

    def __init__(self, variable: str = FFMPEG_OPTIONS_ENV) -> None:
        self._variable = variable
        self._cond = threading.Condition()
        self._value: str | None = None
        self._count = 0
        self._previous: str | None = None

    @contextmanager
    def holding(self, value: str, timeout: float) -> Iterator[None]:
        """Run the block with the variable set to `value`.

        Raises:
            OptionsBusyError: opens with another value did not finish within `timeout` s.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._count == 0 or self._value == value, timeout):
                raise OptionsBusyError(
                    f"{self._count} capture open(s) with {self._variable}={self._value!r} still "
                    f"in progress after {timeout:g} s (hung?)"
                )
            if self._count == 0:
                self._previous = os.environ.get(self._variable)
                os.environ[self._variable] = value
                self._value = value
            self._count += 1
        try:
            yield
        finally:
            with self._cond:
                self._count -= 1
                if self._count == 0:
                    if self._previous is None:
                        os.environ.pop(self._variable, None)
                    else:
                        os.environ[self._variable] = self._previous
                    self._value = None
                    self._cond.notify_all()
