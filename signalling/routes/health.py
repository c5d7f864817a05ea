"""Liveness and metrics for operators."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from accounts.principal import Principal
from signalling.access import Access
from signalling.http import endpoint, json_response, services

routes = web.RouteTableDef()


@routes.get("/healthz")
@endpoint(Access.public)
async def healthz(request: web.Request, _: Principal | None) -> web.Response:
    """200 when the process is up and the database answers; 503 otherwise."""
    try:
        await services(request).db.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        return json_response({"status": "unhealthy", "database": "unreachable", "error": type(exc).__name__}, status=503)
    return json_response({"status": "ok", "database": "ok"})


@routes.get("/metrics")
@endpoint(Access.operator)
async def metrics(request: web.Request, _: Principal | None) -> web.Response:
    body = generate_latest(services(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
