"""Parsing of URL path parameters shared by the route modules."""

from __future__ import annotations

from aiohttp import web

from core.errors import NotFound

MAX_ID = 2**31 - 1  # the largest id a 32-bit integer column holds


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path; anything else (or out of range) is `not_found`, as an unknown id would be."""
    raw = request.match_info.get(name, "")
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        raise NotFound("there is no such thing")
    return int(raw)
