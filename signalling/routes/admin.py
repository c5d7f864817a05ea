"""Admin work: reviewing therapist applications and recording guardian consent given outside the app."""

from __future__ import annotations

from aiohttp import web

from accounts import guardian, representation, review
from accounts.principal import Principal
from signalling.access import Access
from signalling.http import endpoint, json_response, read_json, services
from signalling.routes.params import path_id
from signalling.sockets import disconnect_user

routes = web.RouteTableDef()


@routes.get("/api/admin/applications")
@endpoint(Access.admin)
async def list_applications(request: web.Request, _: Principal | None) -> web.Response:
    rows = await review.list_applications(services(request).accounts, request.query)
    return json_response({"applications": [representation.application(profile, user) for profile, user in rows]})


async def _decide(request: web.Request, principal: Principal | None, approve: bool) -> web.Response:
    assert principal is not None
    svc = services(request)
    therapist_id = path_id(request)
    decide = review.approve if approve else review.refuse
    decision = await decide(svc.accounts, principal, therapist_id)
    if decision.changed:
        # Sockets keep the principal they connected with: close them so the new status applies at once.
        await disconnect_user(svc, therapist_id)
    return json_response(representation.application(decision.profile, decision.user))


@routes.post("/api/admin/applications/{id}/approve")
@endpoint(Access.admin)
async def approve(request: web.Request, principal: Principal | None) -> web.Response:
    return await _decide(request, principal, approve=True)


@routes.post("/api/admin/applications/{id}/refuse")
@endpoint(Access.admin)
async def refuse(request: web.Request, principal: Principal | None) -> web.Response:
    return await _decide(request, principal, approve=False)


@routes.post("/api/admin/clients/{id}/guardian-consent")
@endpoint(Access.admin)
async def record_guardian_consent(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    user = await guardian.record_by_admin(svc.accounts, principal, path_id(request), await read_json(request))
    assert user.client is not None
    return json_response(representation.client_consent(user.client, user, svc.clock.now()))
