"""The browser client's pages: friendly paths for the HTML files in `web/static/` (the e-mailed links among them),
and the front-end packages from npm under `/vendor/`.

Every page is static HTML whose scripts are JavaScript modules from `/static/js/` (the CSP allows no inline script or
style), after one small classic script, `early.js`, that holds a form submitted before the module is ready. Pages
hold no data: everything comes from the REST API and Socket.IO with the bearer token the page keeps in
sessionStorage. `GET /` (the sign-in page) is added by the app factory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from accounts.principal import Principal
from core.errors import Unavailable
from signalling.access import Access
from signalling.http import content_security_policy, endpoint, services

ROOT = Path(__file__).resolve().parent.parent.parent
STATIC_DIR = ROOT / "web" / "static"
NODE_MODULES = ROOT / "node_modules"
#: npm packages the pages import, served read-only from their distribution folder: URL prefix -> folder.
VENDOR = {"/vendor/socket.io-client": NODE_MODULES / "socket.io-client" / "dist"}

#: Friendly path -> HTML file under web/static. `/verify-email`, `/reset-password` and `/guardian-consent` are the
#: paths of the e-mailed links (their token travels in the URL fragment, which never reaches the server).
PAGES = {
    "/signin": "index.html",
    "/verify-email": "verify-email.html",
    "/reset-password": "reset-password.html",
    "/guardian-consent": "guardian-consent.html",
    "/dashboard": "dashboard.html",
    "/home": "home.html",
    "/calls": "calls.html",
    "/calls/{id}": "calls.html",
    "/call/{id}": "call.html",
    "/admin": "admin.html",
    "/admin/billing": "admin-billing.html",
    "/wallet": "wallet.html",
    "/earnings": "earnings.html",
}
#: Pages that load Stripe.js (the card Element): their Content-Security-Policy also allows the Stripe origins the
#: server's Stripe gateway names (Stripe's own, or the local test mode's stand-in).
STRIPE_PAGES = frozenset({"wallet.html"})

routes = web.RouteTableDef()


def _page(filename: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request, _: Principal | None) -> web.FileResponse:
        # no-cache: the browser revalidates (ETag / Last-Modified), so a new release is picked up at once
        headers = {"Cache-Control": "no-cache"}
        stripe = services(request).billing.stripe if filename in STRIPE_PAGES else None
        if stripe is not None:
            headers["Content-Security-Policy"] = content_security_policy(stripe.browser_sources())
        return web.FileResponse(STATIC_DIR / filename, headers=headers)

    page.__name__ = page.__qualname__ = f"page_{filename.replace('.', '_').replace('-', '_')}"
    return endpoint(Access.public)(page)


for _path, _file in PAGES.items():
    routes.get(_path)(_page(_file))


def _vendor_missing(prefix: str) -> None:
    @routes.get(prefix + "/{path:.*}")
    @endpoint(Access.public)
    async def missing(request: web.Request, _: Principal | None) -> web.Response:
        raise Unavailable("the front-end packages are not installed: run `npm ci` in the project folder "
                          "(scripts/serve and scripts/test do it), then restart the server")


for _prefix, _folder in VENDOR.items():
    if _folder.is_dir():
        routes.static(_prefix, _folder, follow_symlinks=False, append_version=False)
    else:  # the server still starts and says what is missing (decided at start: restart after `npm ci`)
        _vendor_missing(_prefix)
