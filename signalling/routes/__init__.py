"""HTTP routes, one module per area; `ROUTES` collects them for the app factory."""

from __future__ import annotations

from aiohttp import web

from signalling.routes import admin, auth, billing, calls, guardian, health, pages, profile, referrals, transcripts

ROUTES: list[web.RouteTableDef] = [
    health.routes, auth.routes, profile.routes, guardian.routes, referrals.routes, admin.routes, calls.routes,
    transcripts.routes, pages.routes, billing.routes,
]
