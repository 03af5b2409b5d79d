"""The gateway's HTTP side: one Starlette app built from small routers, one per area.

`app.create_app` assembles them; `auth` holds the admin and device credential checks,
`errors` maps every domain refusal to an HTTP response in one place.
"""
