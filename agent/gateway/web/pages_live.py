"""Live: per camera, the latest detections drawn, the last events, zone counts."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent.gateway.api.context import ctx
from agent.gateway.api.errors import HttpProblem
from agent.gateway.api.parse import id_param
from agent.gateway.web.draw import annotated_png
from agent.gateway.web.guard import web
from agent.gateway.web.live import CameraLive, LiveCache, camera_view, parse
from agent.gateway.web.render import SECURITY_HEADERS, page


def live_cache(request: Request) -> LiveCache:
    cache: LiveCache = request.app.state.web_live
    return cache


@web
async def live_page(request: Request) -> Response:
    """GET /live[?device=]: every camera heard from (or one device's)."""
    c = ctx(request)
    cache = live_cache(request)
    only = request.query_params.get("device", "")
    now = c.clock()
    cams = []
    for device, camera in cache.cameras():
        got = cache.get(device, camera)
        if got is not None and (not only or device == only) and c.fleet.is_enrolled(device):
            cams.append(camera_view(device, camera, got, now))
    return page(request, "live.html", cameras=cams, device=only, fed=cache.fed)


def heard_camera(request: Request) -> CameraLive:
    """The cached camera of the path's device and camera (400 on a bad id, 404 unheard)."""
    device = id_param(request, "device", "device id")
    camera = id_param(request, "camera", "camera id")
    got = live_cache(request).get(device, camera)
    if got is None or not ctx(request).fleet.is_enrolled(device):
        raise HttpProblem(404, f"nothing heard from {device}/{camera}")
    return got


@web
async def live_image(request: Request) -> Response:
    """GET /live/<device>/<camera>.png: the latest detections drawn (Pillow, off the loop)."""
    got = heard_camera(request)
    msg = parse(got.detection) or {}
    frame = msg.get("frame") or {"width": 640, "height": 360}
    png = await asyncio.to_thread(
        annotated_png, msg.get("detections") or [], (int(frame["width"]), int(frame["height"]))
    )
    return Response(png, media_type="image/png", headers=SECURITY_HEADERS)


@web
async def live_snapshot(request: Request) -> Response:
    """GET /live/<device>/<camera>/snapshot.jpg: the camera's latest retained snapshot, as the
    device drew it (its event's box on the full frame)."""
    got = heard_camera(request)
    if got.snapshot is None:
        raise HttpProblem(404, "no snapshot from this camera")
    return Response(got.snapshot, media_type="image/jpeg", headers=SECURITY_HEADERS)


ROUTES = [
    Route("/live", live_page, methods=["GET"]),
    Route("/live/{device}/{camera}.png", live_image, methods=["GET"]),
    Route("/live/{device}/{camera}/snapshot.jpg", live_snapshot, methods=["GET"]),
]
