"""HTTP hardening as one ASGI middleware.

* ``Origin`` checks: a browser always sends ``Origin`` on a WebSocket handshake
  and on cross-site POSTs. A socket or unsafe request from another origin
  (cross-site WebSocket hijacking, CSRF) is refused unless that origin is in
  ``NATTER_ALLOWED_ORIGINS``; clients that send no ``Origin`` (terminals,
  bridges, curl) are not browsers and pass.
* Security headers on every response: a Content-Security-Policy that allows only
  the UI's own scripts, styles and socket, no framing, ``nosniff``, no referrer,
  and ``no-store`` on the API (tokens travel there).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from natter import logs
from natter.config import Settings
from natter.gateway import limits

log = logs.get("natter.gateway.security")

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: Largest request body accepted (the API's own limits are lower); larger is refused unread.
MAX_BODY_BYTES = 2 * 1024 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class OriginPolicy:
    def __init__(self, allowed: str) -> None:
        items = {o.strip().rstrip("/").lower() for o in allowed.split(",") if o.strip()}
        self.any = "*" in items
        self.allowed = items - {"*"}

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self.any:
            return True
        origin = origin.rstrip("/").lower()
        if origin in self.allowed:
            return True
        # Same origin: the page was served by this host (scheme may differ behind TLS
        # termination; host and port may not).
        parts = urlsplit(origin)
        same_host = host is not None and parts.netloc == host.lower()
        return same_host and parts.scheme in ("http", "https")


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.origins = OriginPolicy(settings.allowed_origins)
        self.headers = [*HEADERS, HSTS] if settings.hsts else list(HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            origin = _header(scope, b"origin")
            if not self.origins.allows(origin, _header(scope, b"host")):
                limits.refuse("origin", origin=origin, ip=client_address(scope))
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008, "reason": "origin"})
                return
            await self.app(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS:
            origin = _header(scope, b"origin")
            if not self.origins.allows(origin, _header(scope, b"host")):
                limits.refuse("origin", origin=origin, ip=client_address(scope))
                await self._problem(send, 403, "forbidden", "cross-origin requests are not allowed")
                return
            length = _header(scope, b"content-length")
            if length is None and _header(scope, b"transfer-encoding") is not None:
                limits.refuse("body_unsized", ip=client_address(scope))
                await self._problem(send, 411, "bad_request", "send a Content-Length")
                return
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
                limits.refuse("body_size", ip=client_address(scope))
                await self._problem(send, 413, "too_large", "request body too large")
                return
        api = str(scope.get("path", "")).startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                if api and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _problem(self, send: Send, status: int, code: str, detail: str) -> None:
        body = orjson.dumps(
            {
                "type": f"https://natter.dev/problems/{code}",
                "title": code.replace("_", " "),
                "status": status,
                "detail": detail,
                "code": code,
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    *self.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
