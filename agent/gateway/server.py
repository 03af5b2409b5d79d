"""The gateway's HTTP side (Starlette, served by uvicorn): JSON API, artifacts, intake.

Routes:
    GET  /v1/health                        gateway liveness and counters
    GET  /v1/devices                       fleet view
    GET  /v1/models                        registered models
    GET  /v1/models/<name>/<version>       signed manifest envelope
    GET  /v1/artifacts/<sha256>            artifact bytes (HTTP Range supported)
    GET  /v1/rollouts                      every rollout, newest last
    GET  /v1/rollouts/<id>                 one rollout with each device's state
    POST /v1/rollouts                      start a rollout (JSON body, see DeployBody)
    POST /v1/rollouts/<id>/abort           abort a running rollout
    POST /v1/intake/<device>/<camera>      hard-frame upload (see agent.gateway.intake)
State-changing calls (deploy, abort) are accepted only from loopback unless
`http.admin_loopback_only` is false.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Callable
from datetime import datetime, timezone
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from agent.contracts.ids import SafeId, check_id
from agent.gateway.config import GatewayConfig
from agent.gateway.db import Store
from agent.gateway.fleet import DeployRefused, DeployRequest, Fleet, rollout_view
from agent.gateway.intake import (
    JPEG_MAGIC,
    IntakeRejected,
    check_labels,
    check_meta,
    safe_stem,
    store_upload,
    token_ok,
)

log = structlog.get_logger(__name__)

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class DeployBody(BaseModel):
    """Body of POST /v1/rollouts."""

    model_config = ConfigDict(extra="forbid")

    model: SafeId = Field(description="Model name.")
    version: int = Field(ge=1, description="Model version to roll out.")
    devices: list[SafeId] = Field(min_length=1, description="Target devices, canary first.")
    canary: int | None = Field(None, ge=0, description="Canary devices; config default if null.")
    wave_size: int | None = Field(None, ge=1, description="Devices per wave after the canary.")
    max_failures: int | None = Field(None, ge=1, description="Failures that abort the rollout.")
    timeout_s: float | None = Field(None, gt=0, description="Per-device deadline in seconds.")


class AbortBody(BaseModel):
    """Body of POST /v1/rollouts/<id>/abort (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("aborted by operator", max_length=500, description="Why, for the record.")


def device_view(row: Any, now: float, offline_after_s: float) -> dict[str, Any]:
    """JSON view of one device row for `edge-gateway devices`."""
    status = row.status or {}
    model = status.get("model")
    health = row.health or {}
    ota = row.ota or {}
    return {
        "device": row.id,
        "online": row.online,
        "stale": now - row.last_seen > offline_after_s,
        "last_seen": row.last_seen,
        "model": None if model is None else f"{model['name']}@{model['version']}",
        "fps": health.get("fps"),
        "latency_ms_p50": health.get("latency_ms_p50"),
        "cameras": [c.get("id") for c in status.get("cameras", [])],
        "ota_state": ota.get("state"),
        "ota_reason": ota.get("reason"),
        "ota_command": ota.get("command_id"),
        "malformed": row.malformed,
    }


def create_app(
    cfg: GatewayConfig,
    store: Store,
    fleet: Fleet,
    health: Callable[[], dict[str, Any]] = dict,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the ASGI app. `health` adds live fields (e.g. MQTT connected) to /v1/health."""

    def admin_allowed(request: Request) -> bool:
        if not cfg.http.admin_loopback_only:
            return True
        host = request.client.host if request.client else ""
        return host in LOOPBACK

    def get_health(request: Request) -> Response:
        return JSONResponse(
            {
                "ok": True,
                "malformed_messages": fleet.malformed,
                "ignored_reports": fleet.ignored_reports,
                "active_rollouts": sorted(fleet.active),
                **health(),
            }
        )

    def get_devices(request: Request) -> Response:
        now = clock()
        return JSONResponse([device_view(d, now, cfg.offline_after_s) for d in store.devices()])

    def get_models(request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "name": m.name,
                    "version": m.version,
                    "format": m.format,
                    "sha256": m.sha256,
                    "length": m.length,
                    "input_size": m.manifest["input_size"],
                    "class_names": m.manifest["class_names"],
                    "created": m.manifest["created"],
                }
                for m in store.models()
            ]
        )

    def get_manifest(request: Request) -> Response:
        try:
            version = int(request.path_params["version"])
        except ValueError:
            return _error(400, "version must be an integer")
        m = store.model(request.path_params["name"], version)
        if m is None:
            return _error(404, "no such model version")
        return JSONResponse(m.signed)

    def get_artifact(request: Request) -> Response:
        sha = request.path_params["sha256"]
        if not _SHA_RE.fullmatch(sha):
            return _error(400, "artifact address must be 64 lower-case hex digits")
        path = cfg.artifacts_dir / sha
        if not path.is_file():
            return _error(404, "no such artifact")
        return FileResponse(path, media_type="application/octet-stream")

    def list_rollouts(request: Request) -> Response:
        now = clock()
        out = []
        for rid in store.rollout_ids():
            r = fleet.rollout(rid)
            if r is not None:
                out.append(rollout_view(r, now))
        return JSONResponse(out)

    def get_rollout(request: Request) -> Response:
        try:
            rid = int(request.path_params["id"])
        except ValueError:
            return _error(400, "rollout id must be an integer")
        r = fleet.rollout(rid)
        if r is None:
            return _error(404, f"no rollout {rid}")
        return JSONResponse(rollout_view(r, clock()))

    async def post_rollout(request: Request) -> Response:
        if not admin_allowed(request):
            return _error(403, "deploy is accepted from loopback only")
        try:
            body = DeployBody.model_validate_json(await request.body())
        except ValidationError as err:
            return _error(
                400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            )
        d = cfg.rollout
        req = DeployRequest(
            model=body.model,
            version=body.version,
            devices=list(body.devices),
            canary=d.canary if body.canary is None else body.canary,
            wave_size=d.wave_size if body.wave_size is None else body.wave_size,
            max_failures=d.max_failures if body.max_failures is None else body.max_failures,
            timeout_s=d.timeout_s if body.timeout_s is None else body.timeout_s,
        )
        try:
            r = fleet.deploy(req)
        except DeployRefused as err:
            return _error(err.status, err.message)
        return JSONResponse(rollout_view(r, clock()), status_code=201)

    async def post_abort(request: Request) -> Response:
        if not admin_allowed(request):
            return _error(403, "abort is accepted from loopback only")
        try:
            rid = int(request.path_params["id"])
        except ValueError:
            return _error(400, "rollout id must be an integer")
        raw = await request.body()
        try:
            body = AbortBody.model_validate_json(raw) if raw.strip() else AbortBody()
        except ValidationError as err:
            return _error(400, str(err.errors()[0]["msg"]))
        try:
            r = fleet.abort(rid, body.reason)
        except DeployRefused as err:
            return _error(err.status, err.message)
        return JSONResponse(rollout_view(r, clock()))

    async def post_intake(request: Request) -> Response:
        try:
            return await _intake(request)
        except IntakeRejected as err:
            log.warning(
                "intake refused",
                status=err.status,
                error=err.message,
                device=request.path_params.get("device"),
            )
            return _error(err.status, err.message)

    async def _intake(request: Request) -> Response:
        device, camera = request.path_params["device"], request.path_params["camera"]
        try:
            check_id(device, "device id")
            check_id(camera, "camera id")
        except ValueError as err:
            raise IntakeRejected(400, str(err)) from None
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if not token_ok(token, cfg.intake.tokens_sha256.get(device)):
            raise IntakeRejected(401, "missing or wrong bearer token for this device")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise IntakeRejected(415, "expected multipart/form-data")
        limit = cfg.intake.max_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise IntakeRejected(413, f"upload of {declared} bytes exceeds the {limit}-byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise IntakeRejected(413, f"upload exceeds the {limit}-byte limit")
        parser = MultiPartParser(
            request.headers, _once(bytes(body)), max_files=3, max_fields=1, max_part_size=limit
        )
        try:
            form = await parser.parse()
        except MultiPartException as err:
            raise IntakeRejected(400, f"bad multipart body: {err.message}") from None
        try:
            unknown = sorted(set(form.keys()) - {"image", "labels", "meta", "name"})
            if unknown:
                raise IntakeRejected(400, f"unknown part(s): {', '.join(unknown)}")
            image = form.get("image")
            if image is None or isinstance(image, str):
                raise IntakeRejected(400, "an 'image' file part (JPEG) is required")
            name_field = form.get("name")
            stem = safe_stem(name_field if isinstance(name_field, str) else image.filename or "")
            for part in ("labels", "meta"):
                value = form.get(part)
                if value is not None and not isinstance(value, str) and value.filename:
                    safe_stem(value.filename)  # refuse path tricks in every name
            files: dict[str, bytes] = {".jpg": await image.read()}
            if not files[".jpg"].startswith(JPEG_MAGIC):
                raise IntakeRejected(415, "image is not a JPEG")
            for part, suffix, check in (
                ("labels", ".txt", check_labels),
                ("meta", ".json", check_meta),
            ):
                value = form.get(part)
                if value is None:
                    continue
                data = value.encode() if isinstance(value, str) else await value.read()
                check(data)
                files[suffix] = data
        finally:
            await form.close()
        day = datetime.fromtimestamp(clock(), tz=timezone.utc).strftime("%Y-%m-%d")
        day_dir = cfg.intake_dir / device / camera / day
        written = store_upload(day_dir, stem, files)
        log.info("intake stored", device=device, camera=camera, stem=stem, files=len(written))
        return JSONResponse(
            {"stored": [str(p.relative_to(cfg.data_dir)) for p in written]}, status_code=201
        )

    routes = [
        Route("/v1/health", get_health),
        Route("/v1/devices", get_devices),
        Route("/v1/models", get_models),
        Route("/v1/models/{name}/{version}", get_manifest),
        Route("/v1/artifacts/{sha256}", get_artifact, methods=["GET", "HEAD"]),
        Route("/v1/rollouts", list_rollouts, methods=["GET"]),
        Route("/v1/rollouts", post_rollout, methods=["POST"]),
        Route("/v1/rollouts/{id}", get_rollout),
        Route("/v1/rollouts/{id}/abort", post_abort, methods=["POST"]),
        Route("/v1/intake/{device}/{camera}", post_intake, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data
    yield b""
