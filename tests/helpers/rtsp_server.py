"""A real RTSP server (GStreamer's) serving an H.264 MP4 in a loop, for the camera tests.

Runs under Debian's `/usr/bin/python3` (where `gi` lives; packages `python3-gi`,
`gir1.2-gst-rtsp-server-1.0`, `gstreamer1.0-plugins-good`, `gstreamer1.0-plugins-bad`), never
the project's venv, and imports nothing from the project. Driven by `tests/helpers/rtsp.py`.

    rtsp_server.py serve PORT CLIP      serve CLIP on rtsp://127.0.0.1:PORT/live until killed;
                                        CLIP `test:WxH@FPS`: a live test pattern (never loops)
    rtsp_server.py scale IN OUT W H FPS write IN scaled to W x H at FPS (H.264 MP4, openh264)
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( multifilesrc location={clip} loop=true ! qtdemux ! h264parse ! "
    "rtph264pay name=pay0 pt=96 config-interval=1 )"
)
LIVE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={w},height={h},"
    "framerate={fps}/1 ! openh264enc gop-size={fps} ! h264parse ! "
    "rtph264pay name=pay0 pt=96 config-interval=1 )"
)
SCALE = (
    "filesrc location={src} ! qtdemux ! h264parse ! openh264dec ! videoconvert ! videoscale ! "
    "videorate ! video/x-raw,width={w},height={h},framerate={fps}/1 ! openh264enc ! h264parse ! "
    "mp4mux ! filesink location={dst}"
)


def serve(port: int, clip: str) -> None:
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    if clip.startswith("test:"):
        size, _, fps = clip[5:].partition("@")
        w, _, h = size.partition("x")
        factory.set_launch(LIVE.format(w=w, h=h, fps=fps))
    else:
        factory.set_launch(LAUNCH.format(clip=clip))
    factory.set_shared(False)  # one pipeline per client: a second client never disturbs the first
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    print("ready", flush=True)
    GLib.MainLoop().run()


def scale(src: str, dst: str, width: int, height: int, fps: int) -> None:
    pipeline = Gst.parse_launch(SCALE.format(src=src, dst=dst, w=width, h=height, fps=fps))
    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    msg = bus.timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is None or msg.type != Gst.MessageType.EOS:
        detail = msg.parse_error()[0].message if msg is not None else "timed out"
        print(f"scaling failed: {detail}", file=sys.stderr, flush=True)
        raise SystemExit(1)


def main(argv: list[str]) -> None:
    Gst.init(None)
    if len(argv) == 3 and argv[0] == "serve":
        serve(int(argv[1]), argv[2])
    elif len(argv) == 6 and argv[0] == "scale":
        scale(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
