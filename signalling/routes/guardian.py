"""Guardian consent for minors: the client asks, the guardian answers through the e-mailed link."""

from __future__ import annotations

from aiohttp import web

from accounts import guardian, representation
from accounts.principal import Principal
from signalling.access import Access
from signalling.http import endpoint, json_response, read_json, services

routes = web.RouteTableDef()


@routes.post("/api/me/guardian-consent-request")
@endpoint(Access.client)
async def request_consent(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    user = await guardian.request_consent(svc.accounts, principal, await read_json(request))
    return json_response(representation.me(user, svc.clock.now()), status=202)


@routes.post("/api/guardian-consent/details")
@endpoint(Access.public)
async def consent_details(request: web.Request, _: Principal | None) -> web.Response:
    return json_response(await guardian.consent_details(services(request).accounts, await read_json(request)))


@routes.post("/api/guardian-consent/confirm")
@endpoint(Access.public)
async def confirm_consent(request: web.Request, _: Principal | None) -> web.Response:
    await guardian.confirm_consent(services(request).accounts, await read_json(request))
    return json_response({"consented": True})
