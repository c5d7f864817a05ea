"""Registration, sign-in and sign-out, e-mail verification, password reset and change, and the signed-in user's
account."""

from __future__ import annotations

from aiohttp import web

from accounts import email_flows, registration, representation, signin
from accounts.models import User
from accounts.principal import Principal
from accounts.tokens import IssuedToken
from core.validation import boolean
from signalling.access import Access
from signalling.http import client_address, endpoint, json_response, read_json, services
from signalling.sockets import disconnect_user

routes = web.RouteTableDef()


def _token(issued: IssuedToken) -> dict[str, str]:
    return {"token": issued.token, "expires_at": issued.expires_at.isoformat()}


def _signed_in(request: web.Request, user: User, issued: IssuedToken, status: int = 200) -> web.Response:
    svc = services(request)
    return json_response({**_token(issued), "user": representation.me(user, svc.clock.now())}, status=status)


@routes.post("/api/auth/register")
@endpoint(Access.public)
async def register(request: web.Request, _: Principal | None) -> web.Response:
    svc = services(request)
    user, issued = await registration.register_client(svc.accounts, await read_json(request), client_address(request))
    return _signed_in(request, user, issued, status=201)


@routes.post("/api/auth/apply")
@endpoint(Access.public)
async def apply(request: web.Request, _: Principal | None) -> web.Response:
    svc = services(request)
    user, issued = await registration.apply_as_therapist(svc.accounts, await read_json(request), client_address(request))
    return _signed_in(request, user, issued, status=201)


@routes.post("/api/auth/signin")
@endpoint(Access.public)
async def sign_in(request: web.Request, _: Principal | None) -> web.Response:
    svc = services(request)
    try:
        user, issued = await signin.sign_in(svc.accounts, await read_json(request), client_address(request))
    except Exception:
        svc.metrics.signins.labels("refused").inc()
        raise
    svc.metrics.signins.labels("ok").inc()
    return _signed_in(request, user, issued)


@routes.post("/api/auth/signout")
@endpoint(Access.user)
async def sign_out(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    data = await read_json(request) if request.can_read_body else {}
    everywhere = boolean(data, "everywhere", required=False)
    await signin.sign_out(svc.accounts, principal, everywhere=everywhere)
    await disconnect_user(svc, principal.user_id, None if everywhere else principal.token_id)
    return web.Response(status=204)


@routes.post("/api/auth/refresh")
@endpoint(Access.user)
async def refresh(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response(_token(await signin.refresh(services(request).accounts, principal)))


@routes.post("/api/auth/verify-email")
@endpoint(Access.public)
async def verify_email(request: web.Request, _: Principal | None) -> web.Response:
    await email_flows.verify_email(services(request).accounts, await read_json(request))
    return json_response({"verified": True})


@routes.post("/api/auth/resend-verification")
@endpoint(Access.user)
async def resend_verification(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    await email_flows.resend_verification(services(request).accounts, principal.user_id, client_address(request))
    return json_response({"queued": True}, status=202)


@routes.post("/api/auth/password-reset")
@endpoint(Access.public)
async def password_reset(request: web.Request, _: Principal | None) -> web.Response:
    await email_flows.request_password_reset(services(request).accounts, await read_json(request), client_address(request))
    return json_response({"queued": True}, status=202)


@routes.post("/api/auth/password-reset/confirm")
@endpoint(Access.public)
async def password_reset_confirm(request: web.Request, _: Principal | None) -> web.Response:
    svc = services(request)
    user_id = await email_flows.reset_password(svc.accounts, await read_json(request))
    await disconnect_user(svc, user_id)
    return web.Response(status=204)


@routes.post("/api/me/password")
@endpoint(Access.user)
async def change_password(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    for token_id in await signin.change_password(svc.accounts, principal, await read_json(request)):
        await disconnect_user(svc, principal.user_id, token_id)   # the other sessions' sockets; this one stays
    return web.Response(status=204)


@routes.get("/api/me")
@endpoint(Access.user)
async def me(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    async with svc.db.session() as session:
        user = await session.get(User, principal.user_id)
        assert user is not None
        return json_response(representation.me(user, svc.clock.now()))
