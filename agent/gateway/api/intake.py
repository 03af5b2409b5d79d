"""Hard-frame intake (a device route): multipart upload -> checked files on disk.

The rules of the stored files are in `agent.gateway.intake`; limits (daily quota, free-space
floor) in `agent.gateway.quota`. Only an enrolled device with its own token may upload.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import structlog
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.contracts.ids import check_id
from agent.gateway.api.context import ctx
from agent.gateway.api.views import utc_day
from agent.gateway.intake import (
    JPEG_MAGIC,
    IntakeRefusal,
    IntakeRejected,
    check_labels,
    check_meta,
    safe_stem,
    store_upload,
)
from agent.gateway.tokens import bearer

log = structlog.get_logger(__name__)

PARTS = frozenset({"image", "labels", "meta", "name"})


def authorize(request: Request) -> tuple[str, str]:
    """(device, camera) of the path, when the bearer token is that enrolled device's own."""
    device, camera = request.path_params["device"], request.path_params["camera"]
    try:
        check_id(device, "device id")
        check_id(camera, "camera id")
    except ValueError as err:
        raise IntakeRejected(IntakeRefusal.BAD_ID, str(err)) from None
    c = ctx(request)
    token = bearer(request.headers.get("authorization"))
    if not c.fleet.devices.token_ok(device, token, c.cfg.intake.tokens_sha256.get(device)):
        raise IntakeRejected(
            IntakeRefusal.UNAUTHORIZED, "missing or wrong bearer token for this device"
        )
    return device, camera


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refused (`too_large`) as soon as it passes `limit` bytes."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise IntakeRejected(IntakeRefusal.NOT_MULTIPART, "expected multipart/form-data")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IntakeRejected(
            IntakeRefusal.TOO_LARGE, f"upload of {declared} bytes exceeds the {limit}-byte limit"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise IntakeRejected(IntakeRefusal.TOO_LARGE, f"upload exceeds the {limit}-byte limit")
    return bytes(body)


async def parse_form(request: Request, body: bytes, limit: int) -> FormData:
    """The multipart form of `body` (at most 3 files and 1 field)."""
    parser = MultiPartParser(
        request.headers, _once(body), max_files=3, max_fields=1, max_part_size=limit
    )
    try:
        return await parser.parse()
    except MultiPartException as err:
        raise IntakeRejected(IntakeRefusal.BAD_BODY, f"bad multipart body: {err.message}") from None


async def form_files(form: FormData) -> tuple[str, dict[str, bytes]]:
    """The stem and {suffix: bytes} of a checked form: a JPEG, optional labels and meta."""
    unknown = sorted(set(form.keys()) - PARTS)
    if unknown:
        raise IntakeRejected(IntakeRefusal.BAD_BODY, f"unknown part(s): {', '.join(unknown)}")
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise IntakeRejected(IntakeRefusal.BAD_BODY, "an 'image' file part (JPEG) is required")
    name_field = form.get("name")
    stem = safe_stem(name_field if isinstance(name_field, str) else image.filename or "")
    files: dict[str, bytes] = {".jpg": await image.read()}
    if not files[".jpg"].startswith(JPEG_MAGIC):
        raise IntakeRejected(IntakeRefusal.NOT_JPEG, "image is not a JPEG")
    for part, suffix, check in (("labels", ".txt", check_labels), ("meta", ".json", check_meta)):
        value = form.get(part)
        if value is None:
            continue
        if isinstance(value, UploadFile) and value.filename:
            safe_stem(value.filename)  # refuse path tricks in every name
        data = value.encode() if isinstance(value, str) else await value.read()
        check(data)
        files[suffix] = data
    return stem, files


async def post_intake(request: Request) -> Response:
    """POST /v1/intake/<device>/<camera>: store one hard frame (see agent.gateway.intake)."""
    c = ctx(request)
    device, camera = authorize(request)
    limit = c.cfg.intake.max_bytes
    form = await parse_form(request, await read_limited(request, limit), limit)
    try:
        stem, files = await form_files(form)
    finally:
        await form.close()
    day = utc_day(c.clock())
    nbytes = sum(len(data) for data in files.values())
    c.quota.admit(device, day, nbytes, len(files))
    written = store_upload(c.cfg.intake_dir / device / camera / day, stem, files)
    c.quota.record(device, day, nbytes, len(written))
    c.review.register(device, camera, day, stem, files, c.clock())
    log.info("intake stored", device=device, camera=camera, stem=stem, files=len(written))
    return JSONResponse(
        {"stored": [str(p.relative_to(c.cfg.data_dir)) for p in written]}, status_code=201
    )


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data
    yield b""


ROUTES = [Route("/v1/intake/{device}/{camera}", post_intake, methods=["POST"])]
