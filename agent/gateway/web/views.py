"""What the pages show, from the gateway's state (pure: rows in, plain dicts out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.gateway.db import ModelRow
from agent.gateway.devices import DeviceRow

FLEET_STATES = ("online", "stale", "offline", "never")
SORT_KEYS = ("device", "state", "model", "fps", "seen")


def link_state(row: DeviceRow, now: float, offline_after_s: float) -> str:
    """never (no status yet), offline (status or last will), stale (silent), or online."""
    if row.last_seen is None or row.status is None:
        return "never"
    if not row.online:
        return "offline"
    return "stale" if now - row.last_seen > offline_after_s else "online"


def fleet_row(row: DeviceRow, now: float, offline_after_s: float) -> dict[str, Any]:
    """One device of the Fleet page."""
    status, health, ota = row.status or {}, row.health or {}, row.ota or {}
    model = status.get("model")
    cameras = health.get("cameras") or status.get("cameras") or []
    return {
        "id": row.id,
        "state": link_state(row, now, offline_after_s),
        "seen_s": None if row.last_seen is None else now - row.last_seen,
        "agent": status.get("agent_version"),
        "model": None if model is None else f"{model['name']}@{model['version']}",
        "fps": health.get("fps"),
        "latency_p50": health.get("latency_ms_p50"),
        "latency_p99": health.get("latency_ms_p99"),
        "outbox_depth": health.get("outbox_depth"),
        "dropped": (health.get("outbox_dropped") or 0) + (health.get("publish_queue_dropped") or 0)
        if health
        else None,
        "cameras": [
            {"id": c.get("id"), "state": c.get("state"), "error": c.get("last_error")}
            for c in cameras
        ],
        "ota_state": ota.get("state"),
        "ota_reason": ota.get("reason"),
        "ota_detail": ota.get("detail"),
        "probation_ends": ota.get("probation_ends") if ota.get("state") == "active" else None,
        "malformed": row.malformed,
        "health": health,
    }


@dataclass(frozen=True)
class FleetQuery:
    """Sort and filter of the Fleet page (from its query string; unknown values ignored)."""

    q: str = ""
    state: str = ""
    sort: str = "device"
    desc: bool = False

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> FleetQuery:
        state = params.get("state", "")
        sort = params.get("sort", "device")
        return cls(
            q=params.get("q", "").strip()[:100],
            state=state if state in FLEET_STATES else "",
            sort=sort if sort in SORT_KEYS else "device",
            desc=params.get("dir") == "desc",
        )


def _sort_key(sort: str):  # noqa: ANN202 - a key function
    order = {s: i for i, s in enumerate(FLEET_STATES)}
    keys = {
        "device": lambda r: (r["id"],),
        "state": lambda r: (order[r["state"]], r["id"]),
        "model": lambda r: (r["model"] or "", r["id"]),
        "fps": lambda r: (r["fps"] if r["fps"] is not None else -1.0, r["id"]),
        "seen": lambda r: (r["seen_s"] if r["seen_s"] is not None else 1e18, r["id"]),
    }
    return keys[sort]


def fleet_rows(rows: Iterable[dict[str, Any]], query: FleetQuery) -> list[dict[str, Any]]:
    """The rows the query keeps, in its order."""
    needle = query.q.lower()
    kept = [
        r
        for r in rows
        if (not query.state or r["state"] == query.state)
        and (not needle or needle in r["id"] or needle in (r["model"] or "").lower())
    ]
    return sorted(kept, key=_sort_key(query.sort), reverse=query.desc)


def fleet_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(FLEET_STATES, 0)
    for r in rows:
        out[r["state"]] += 1
    return out


def model_row(m: ModelRow, running: Mapping[str, list[str]]) -> dict[str, Any]:
    """One registered version of the Models page; `running`: model@version -> devices."""
    man = m.manifest
    key = f"{m.name}@{m.version}"
    return {
        "key": key,
        "name": m.name,
        "version": m.version,
        "format": m.format,
        "sha256": m.sha256,
        "length": m.length,
        "classes": list(man.get("class_names", [])),
        "input_size": man.get("input_size"),
        "key_id": m.signed.get("key_id"),
        "expires": man.get("expires"),
        "created": man.get("created"),
        "gate": man.get("gate"),
        "devices": running.get(key, []),
    }


def running_models(rows: Iterable[DeviceRow]) -> dict[str, list[str]]:
    """model@version -> the devices whose status says they run it."""
    out: dict[str, list[str]] = {}
    for r in rows:
        model = (r.status or {}).get("model")
        if model:
            out.setdefault(f"{model['name']}@{model['version']}", []).append(r.id)
    return out


ACTIVE_DEVICE_STATES = ("pending", "sent", "updating", "reverting")


def wave_table(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per wave of a rollout view: its name and the count of each device state."""
    waves: dict[int, dict[str, int]] = {}
    for d in view["devices"]:
        counts = waves.setdefault(d["wave"], {})
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    return [
        {"wave": w, "name": "canary" if w == 0 else f"wave {w}", "counts": c}
        for w, c in sorted(waves.items())
    ]
