"""The signed-in user's account details, a therapist's availability and picture, and therapists' pictures."""

from __future__ import annotations

from aiohttp import web

from accounts import profiles, representation
from accounts.principal import Principal
from core.errors import PayloadTooLarge
from signalling.access import Access
from signalling.http import endpoint, json_response, read_json, services
from signalling.routes.params import path_id

routes = web.RouteTableDef()
READ_CHUNK = 64 * 1024


@routes.patch("/api/me")
@endpoint(Access.user)
async def update_me(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    user = await profiles.update_account(svc.accounts, principal, await read_json(request))
    return json_response(representation.me(user, svc.clock.now()))


@routes.put("/api/me/availability")
@endpoint(Access.approved_therapist)
async def set_availability(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    available = await profiles.set_availability(services(request).accounts, principal, await read_json(request))
    return json_response({"available": available})


async def read_limited_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to be larger than `limit` (declared or streamed)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the picture must be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the picture must be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@routes.put("/api/me/picture")
@endpoint(Access.therapist)
async def put_picture(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    profiles.check_content_type(request.content_type)
    raw = await read_limited_body(request, svc.settings.max_picture_bytes)
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
