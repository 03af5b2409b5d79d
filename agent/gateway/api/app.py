"""The ASGI app: the routers of each area, the shared context, the error mapping.

Routes:
    GET    /v1/health                        gateway liveness and counters          (admin)
    GET    /v1/devices                       fleet view: enrolled devices           (admin)
    POST   /v1/devices                       enrol a device                         (admin)
    DELETE /v1/devices/<id>                  remove a device                        (admin)
    POST   /v1/devices/<id>/config           push a camera config                   (admin)
    GET    /v1/models                        registered models                      (admin)
    GET    /v1/models/<name>/<version>       signed manifest envelope               (admin)
    GET    /v1/rollouts                      every rollout, oldest first            (admin)
    GET    /v1/rollouts/<id>                 one rollout with each device's state   (admin)
    POST   /v1/rollouts                      start a rollout                        (admin)
    POST   /v1/rollouts/<id>/abort           abort a running rollout                (admin)
    POST   /v1/rollouts/<id>/rollback        send a finished rollout's devices back (admin)
    GET    /v1/artifacts/<sha256>            artifact bytes, HTTP Range             (device)
    POST   /v1/intake/<device>/<camera>      hard-frame upload                      (device)
    GET    /v1/review/items[/<id>[/image]]   intake items to review (filters, counts) (admin)
    GET    /v1/review/facets                 values of the review filters           (admin)
    POST   /v1/review/accept|reject|relabel  review decisions, in bulk by filter    (admin)
Admin and device credentials: `agent.gateway.api.auth`. The web page's routes (`/login`,
`/fleet`, `/rollouts`, `/models`, `/live`, `/review`, `/static/...`) come from
`agent.gateway.web`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.applications import Starlette

from agent.gateway.api import artifacts, config, devices, intake, models, review, rollouts
from agent.gateway.api import health as health_routes
from agent.gateway.api.context import ApiContext
from agent.gateway.api.errors import EXCEPTION_HANDLERS
from agent.gateway.config import GatewayConfig
from agent.gateway.config_push import ConfigPushes
from agent.gateway.db import Store
from agent.gateway.fleet import Fleet
from agent.gateway.quota import IntakeQuota
from agent.gateway.review_store import ReviewStore
from agent.gateway.web.live import LiveCache
from agent.gateway.web.routes import web_routes
from agent.gateway.web.session import Sessions

log = structlog.get_logger(__name__)

ROUTERS = (health_routes, devices, config, models, rollouts, artifacts, intake, review)


def create_app(
    cfg: GatewayConfig,
    store: Store,
    fleet: Fleet,
    health: Callable[[], dict[str, Any]] = dict,
    clock: Callable[[], float] = time.time,
    config_pushes: ConfigPushes | None = None,
    live: LiveCache | None = None,
) -> Starlette:
    """Build the ASGI app. `health` adds live fields (e.g. MQTT connected) to /v1/health;
    `live` holds the latest detections for the web page's Live view."""
    app = Starlette(
        routes=[route for router in ROUTERS for route in router.ROUTES] + web_routes(),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    quota = IntakeQuota(store, cfg.intake, cfg.data_dir)
    review = ReviewStore(store, cfg.intake_dir)
    added = review.index()  # intake files from before the review table, or copied in
    log.info("intake indexed for review", added=added)
    app.state.ctx = ApiContext(cfg, store, fleet, quota, review, health, clock, config_pushes)
    app.state.web_sessions = Sessions()
    app.state.web_live = live if live is not None else LiveCache(cfg.mqtt.topic_prefix, clock)
    return app
