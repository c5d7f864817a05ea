"""The call log over REST: lists, one call's page, the therapist's notes, the panel of past clients, test calls."""

from __future__ import annotations

from aiohttp import web

from accounts.principal import Principal
from calls import log, notes, testcalls
from calls.membership import load_call
from pool.dashboard import refresh_dashboard
from transcription.access import may_read_transcript
from transcription.store import log_access, transcript
from signalling.access import Access
from signalling.http import endpoint, json_response, read_json, services
from signalling.routes.params import path_id

routes = web.RouteTableDef()


@routes.get("/api/calls")
@endpoint(Access.user)
async def list_calls(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response({"calls": await log.list_calls(services(request).calls, principal)})


@routes.get("/api/calls/{id}")
@endpoint(Access.user)
async def call_detail(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    call_id = path_id(request)
    detail = await log.call_detail(svc.calls, principal, call_id)
    if may_read_transcript(await load_call(svc.calls, call_id), principal, svc.settings):
        detail["transcript"] = await transcript(svc.db, svc.keyring, call_id)
        await log_access(svc.db, svc.clock, user_id=principal.user_id, call_id=call_id, action="read")
    else:
        detail.pop("transcript", None)
    return json_response(detail)


@routes.get("/api/calls/{id}/notes")
@endpoint(Access.therapist)
async def get_notes(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response(await notes.read(services(request).calls, principal, path_id(request)))


@routes.put("/api/calls/{id}/notes")
@endpoint(Access.therapist)
async def put_notes(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    body = await read_json(request)
    return json_response(await notes.save(services(request).calls, principal, {**body, "call_id": path_id(request)}))


@routes.get("/api/clients")
@endpoint(Access.therapist)
async def client_panel(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    return json_response({"clients": await log.client_panel(services(request).calls, principal)})


@routes.post("/api/admin/test-calls")
@endpoint(Access.admin)
async def open_test_call(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    opened = await testcalls.open_test_call(svc.accounts, principal, await read_json(request))
    for user_id in (opened["call"]["therapist_id"], opened["call"]["client_id"]):
        await svc.sio.emit("call.ready", {"call": opened["call"]}, to=f"user:{user_id}")
    await refresh_dashboard(svc.pool, opened["call"]["therapist_id"])  # in a call: out of the pool until it ends
    return json_response(opened, status=201)
