"""JSON views (pure): what the API returns for devices and models."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from agent.gateway.db import ModelRow
from agent.gateway.devices import DeviceRow
from agent.gateway.quota import IntakeUsage


def utc_day(now: float) -> str:
    """YYYY-MM-DD (UTC) of an epoch time: the intake's day."""
    return datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%d")


def device_view(
    row: DeviceRow,
    now: float,
    offline_after_s: float,
    intake: IntakeUsage,
    config_push: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One enrolled device for `edge-gateway devices`."""
    status = row.status or {}
    model = status.get("model")
    health = row.health or {}
    ota = row.ota or {}
    return {
        "device": row.id,
        "online": row.online,
        "stale": row.last_seen is None or now - row.last_seen > offline_after_s,
        "last_seen": row.last_seen,
        "model": None if model is None else f"{model['name']}@{model['version']}",
        "fps": health.get("fps"),
        "latency_ms_p50": health.get("latency_ms_p50"),
        "cameras": [c.get("id") for c in status.get("cameras", [])],
        "ota_state": ota.get("state"),
        "ota_reason": ota.get("reason"),
        "ota_command": ota.get("command_id"),
        "malformed": row.malformed,
        "config_sha256": status.get("config_sha256"),
        "config_push": config_push,
        "intake": {
            "day": intake.day,
            "bytes": intake.bytes,
            "files": intake.files,
            "refused_quota": intake.refused_quota,
            "refused_disk": intake.refused_disk,
        },
    }


def model_view(m: ModelRow) -> dict[str, Any]:
    """One registered model version for `edge-gateway models list`."""
    return {
        "name": m.name,
        "version": m.version,
        "format": m.format,
        "sha256": m.sha256,
        "length": m.length,
        "input_size": m.manifest["input_size"],
        "class_names": m.manifest["class_names"],
        "created": m.manifest["created"],
        "manifest": m.manifest,
    }
