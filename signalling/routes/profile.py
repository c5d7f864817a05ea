"""The signed-in user's account details, a therapist's availability and picture, and therapists' pictures."""

from __future__ import annotations

from aiohttp import web

from accounts import pictures, profiles, representation
from accounts.principal import Principal
from signalling.access import Access
from signalling.http import endpoint, json_response, read_body, read_json, services
from signalling.pool_rooms import announce_rooms_changed, sync_local_rooms
from signalling.routes.params import path_id

routes = web.RouteTableDef()


@routes.patch("/api/me")
@endpoint(Access.user)
async def update_me(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    user = await profiles.update_account(svc.accounts, principal, await read_json(request))
    if principal.is_therapist:
        await announce_rooms_changed(svc, principal.user_id)
    return json_response(representation.me(user, svc.clock.now()))


@routes.put("/api/me/availability")
@endpoint(Access.approved_therapist)
async def set_availability(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    available = await profiles.set_availability(svc.accounts, principal, await read_json(request))
    svc.pool.memory.forget_profile(principal.user_id)
    await sync_local_rooms(svc.sio, svc.db, principal.user_id)
    await announce_rooms_changed(svc, principal.user_id)
    return json_response({"available": available})


@routes.put("/api/me/picture")
@endpoint(Access.therapist)
async def put_picture(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    pictures.check_content_type(request.content_type)  # 415 before reading the body
    raw = await read_body(request, svc.settings.max_picture_bytes, "the picture")
    user = await profiles.set_picture(svc.accounts, principal, raw, request.content_type)
    return json_response(representation.me(user, svc.clock.now()))


@routes.delete("/api/me/picture")
@endpoint(Access.therapist)
async def delete_picture(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    user = await profiles.delete_picture(svc.accounts, principal)
    return json_response(representation.me(user, svc.clock.now()))


@routes.get("/api/therapists/{id}/picture")
@endpoint(Access.user)
async def therapist_picture(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    therapist_id = path_id(request)
    data, content_type, version = await profiles.picture_of(services(request).accounts, principal, therapist_id)
    etag = f'"p{therapist_id}-{version}"'
    headers = {"Cache-Control": "private, max-age=3600", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type=content_type, headers=headers)
