"""A therapist's referral codes: create, list, revoke."""

from __future__ import annotations

from aiohttp import web

from accounts import referrals, representation
from accounts.principal import Principal
from signalling.access import Access
from signalling.http import endpoint, json_response, services

routes = web.RouteTableDef()


@routes.post("/api/therapist/referral-codes")
@endpoint(Access.approved_therapist)
async def create_code(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    row = await referrals.create_code(services(request).accounts, principal)
    return json_response(representation.referral_code(row), status=201)


@routes.get("/api/therapist/referral-codes")
@endpoint(Access.therapist)
async def list_codes(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    rows = await referrals.list_codes(services(request).accounts, principal)
    return json_response({"codes": [representation.referral_code(row) for row in rows]})


@routes.delete("/api/therapist/referral-codes/{code}")
@endpoint(Access.therapist)
async def revoke_code(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    row = await referrals.revoke_code(services(request).accounts, principal, request.match_info["code"])
    return json_response(representation.referral_code(row))
