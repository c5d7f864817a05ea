"""HTTP plumbing: the `endpoint` decorator (access check), JSON bodies, errors as JSON, client addresses, Origin check."""

from __future__ import annotations

import functools
import ipaddress
import json
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from accounts.principal import Principal
from accounts.signin import authenticate
from core.errors import AppError, Forbidden, Invalid, PayloadTooLarge, UnsupportedMedia
from core.logging import get_logger
from signalling.access import Access, check
from signalling.services import Services

log = get_logger("http")
SERVICES = web.AppKey("services", Services)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request, Principal | None], Awaitable[web.StreamResponse]]

#: The Content-Security-Policy of every response (the app factory adds it): no inline script or style, nothing from
#: elsewhere. A page that loads Stripe.js widens a few directives with Stripe's origins (`content_security_policy`).
CSP: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",), "script-src": ("'self'",), "style-src": ("'self'",),
    "img-src": ("'self'", "data:", "blob:"), "media-src": ("'self'", "blob:"), "connect-src": ("'self'",),
    "object-src": ("'none'",), "base-uri": ("'none'",), "frame-ancestors": ("'none'",), "form-action": ("'self'",),
}


def content_security_policy(extra: Mapping[str, Sequence[str]] | None = None) -> str:
    """`CSP` as a header value, with the sources in `extra` added to their directives (a directive not in `CSP`
    starts from nothing)."""
    directives = {name: list(sources) for name, sources in CSP.items()}
    for name, sources in (extra or {}).items():
        directives.setdefault(name, [])
        directives[name] += [s for s in sources if s not in directives[name]]
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))


def error_response(err: AppError) -> web.Response:
    response = json_response({"error": err.to_dict()}, status=err.status)
    retry_after = err.details.get("retry_after")
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return response


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def endpoint(access: Access) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Declare a route's access level; the wrapper authenticates and authorises before the handler runs."""

    def decorate(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            principal: Principal | None = None
            if access is Access.operator:
                _check_operator(request)
            elif access is not Access.public:
                principal = await authenticate(services(request).accounts, bearer_token(request))
                check(access, principal)
            return await handler(request, principal)

        wrapper.access = access  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _check_operator(request: web.Request) -> None:
    expected = services(request).settings.metrics_token
    if not expected:
        return
    import hmac

    if not hmac.compare_digest((bearer_token(request) or "").encode(), expected.encode()):
        raise Forbidden("the metrics token is required", code="forbidden")


async def read_body(request: web.Request, limit: int, what: str = "the body") -> bytes:
    """The raw body, refused with 413 as soon as it is known to be larger than `limit` (declared or streamed)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"{what} must be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} must be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 413, 415 or 400 with a code otherwise."""
    if request.content_type != "application/json":
        raise UnsupportedMedia("send the body as application/json", code="unsupported_media")
    raw = await read_body(request, services(request).settings.max_json_bytes)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", code="invalid_json")
    return data


def client_address(request: web.Request) -> str:
    """The client's IP; `X-Forwarded-For` is believed only when the direct peer is a configured proxy."""
    peer = request.remote or ""
    proxies = [ipaddress.ip_network(p, strict=False) for p in services(request).settings.trusted_proxies]

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in proxies)

    if not proxies or not trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            return hop
    return hops[0] if hops else peer


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def core_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Origin check on unsafe methods, errors as JSON, metrics and one structured access-log line per request."""
    svc = services(request)
    started = time.perf_counter()
    route = _route_name(request)
    status = 500
    try:
        origin = request.headers.get("Origin")
        if request.method in UNSAFE_METHODS and origin and origin not in svc.settings.effective_allowed_origins:
            raise Forbidden("requests from this origin are not allowed", code="bad_origin")
        response = await handler(request)
        status = response.status
        return response
    except AppError as err:
        status = err.status
        if err.status >= 500:  # our failure, not the client's (a DecryptionError: a key missing, a tampered row)
            log.error("http.server_error", route=route, method=request.method, code=err.code, error=type(err).__name__)
        return error_response(err)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status >= 400 and exc.content_type != "application/json":
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
            return json_response({"error": {"code": code, "message": exc.reason}}, status=exc.status)
        raise
    except Exception:
        log.exception("http.unhandled", route=route, method=request.method)
        return json_response({"error": {"code": "internal", "message": "something went wrong on our side"}}, status=500)
    finally:
        elapsed = time.perf_counter() - started
        svc.metrics.http_requests.labels(request.method, route, str(status)).inc()
        svc.metrics.http_seconds.labels(route).observe(elapsed)
        if route != "/healthz":
            log.info("http.request", method=request.method, route=route, status=status, ms=round(elapsed * 1000, 2))
