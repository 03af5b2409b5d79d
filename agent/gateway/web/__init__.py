"""The gateway's web page: server-rendered HTML on the admin API's data (`edge-gateway serve`).

Pages (Jinja2 templates, plain CSS, a little JavaScript for live parts over server-sent
events; everything served from this package, nothing from a CDN):

    /login            the admin token -> an HttpOnly, SameSite=Strict session cookie
    /fleet            every device: online/stale/offline, model, fps, outbox, cameras, OTA
    /devices/<id>     one device: health, cameras, OTA history
    /rollouts         rollouts; /rollouts/new: start a deploy; /rollouts/<id>: live waves,
                      abort and rollback (each with a confirmation page)
    /models           the registry and which devices run each version
    /live             per camera: the latest detections drawn (Pillow), events

Credentials: `agent.gateway.web.guard` (session, CSRF, Host). Sessions live in memory: a
restart of the gateway asks for the token again.
"""
