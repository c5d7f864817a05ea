"""Transcripts and recordings over REST: download (text, WebVTT, JSON), search, recordings; every read is logged."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from accounts.principal import Principal
from calls.membership import load_call
from core.errors import Invalid, NotFound
from core.validation import text
from media.recorder import recording_aad
from signalling.access import Access
from signalling.http import endpoint, json_response, services
from signalling.routes.params import path_id
from transcription import export
from transcription.access import require_recording_reader, require_transcript_reader, search
from transcription.models import Recording
from transcription.store import log_access, transcript

routes = web.RouteTableDef()


@routes.get("/api/calls/{id}/transcript")
@endpoint(Access.user)
async def download(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    call_id = path_id(request)
    fmt = request.query.get("format", "json")
    if fmt not in export.FORMATS:
        raise Invalid("format: must be txt, vtt or json", details={"field": "format"})
    require_transcript_reader(await load_call(svc.calls, call_id), principal, svc.settings)
    segments = await transcript(svc.db, svc.keyring, call_id)
    await log_access(svc.db, svc.clock, user_id=principal.user_id, call_id=call_id, action=f"download.{fmt}")
    body = {"txt": lambda: export.to_text(segments), "vtt": lambda: export.to_vtt(segments),
            "json": lambda: export.to_json(call_id, segments)}[fmt]()
    content_type, ext = export.FORMATS[fmt]
    return web.Response(text=body, content_type=content_type, headers={
        "Content-Disposition": f'attachment; filename="call-{call_id}-transcript.{ext}"', "Cache-Control": "no-store"})


@routes.get("/api/transcripts/search")
@endpoint(Access.therapist)
async def search_transcripts(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    query = text(dict(request.query), "q", max_len=200, min_len=2)
    async with svc.db.session() as session:
        found = await search(session, svc.keyring, principal.user_id, query)
    # one entry per call whose transcript was read by the search (one without a call when nothing matched)
    for call_id in sorted({seg["call_id"] for seg in found}) or [None]:
        await log_access(svc.db, svc.clock, user_id=principal.user_id, call_id=call_id, action="search")
    return json_response({"results": found})


@routes.get("/api/calls/{id}/recordings")
@endpoint(Access.therapist)
async def list_recordings(request: web.Request, principal: Principal | None) -> web.Response:
    assert principal is not None
    svc = services(request)
    call_id = path_id(request)
    require_recording_reader(await load_call(svc.calls, call_id), principal)
    async with svc.db.session() as session:
        rows = (await session.scalars(select(Recording).where(Recording.call_id == call_id).order_by(Recording.id))).all()
    return json_response({"recordings": [
        {"id": r.id, "speaker": r.speaker_role, "start_offset_ms": r.start_offset_ms, "status": r.status,
         "created_at": r.created_at.isoformat()} for r in rows]})


@routes.get("/api/calls/{id}/recordings/{recording_id}")
@endpoint(Access.therapist)
async def download_recording(request: web.Request, principal: Principal | None) -> web.StreamResponse:
    """The recording decrypted, as Ogg/Opus (readable up to its last whole chunk if the server stopped mid-call)."""
    assert principal is not None
    svc = services(request)
    call_id, recording_id = path_id(request), path_id(request, "recording_id")
    require_recording_reader(await load_call(svc.calls, call_id), principal)
    async with svc.db.session() as session:
        row = await session.get(Recording, recording_id)
    if row is None or row.call_id != call_id or row.status == "deleted" or not Path(row.path).exists():
        raise NotFound("there is no such recording")
    from core.crypto import read_chunked

    def decrypt() -> bytes:
        with open(row.path, "rb") as fh:
            return read_chunked(svc.keyring, fh, recording_aad(call_id, row.speaker_role)).data

    import asyncio

    data = await asyncio.get_running_loop().run_in_executor(None, decrypt)
    await log_access(svc.db, svc.clock, user_id=principal.user_id, call_id=call_id, action="recording.download")
    return web.Response(body=data, content_type="audio/ogg", headers={
        "Content-Disposition": f'attachment; filename="call-{call_id}-{row.speaker_role}-{row.id}.ogg"',
        "Cache-Control": "no-store"})
