"""The HTTP API: rooms, history pages, posting, health, readiness and metrics.

Errors are RFC 9457 problem bodies carrying the protocol's error code.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from natter import protocol
from natter.auth import Identity, Unauthenticated
from natter.errors import BadRequest, NatterError, TooLarge
from natter.gateway import limits, metrics
from natter.gateway.state import Gateway
from natter.gateway.ws import history_page

MAX_BODY_BYTES = 1_100_000


def _gw(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def problem(exc: NatterError) -> JSONResponse:
    metrics.ERRORS.labels(exc.code).inc()
    body: dict[str, Any] = {
        "type": f"https://natter.dev/problems/{exc.code}",
        "title": exc.code.replace("_", " "),
        "status": exc.http_status,
        "detail": exc.message,
        "code": exc.code,
    }
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="natter"'
    return JSONResponse(
        body, status_code=exc.http_status, media_type="application/problem+json", headers=headers
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route or method): a problem body under /api/."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    error = BadRequest(exc.detail)
    error.http_status = exc.status_code
    response = problem(error)
    response.headers.update(exc.headers or {})
    return response


async def _identity(request: Request, body: dict[str, Any] | None = None) -> Identity:
    """Open mode: the nickname in the body or X-Natter-User; jwt mode: the bearer token."""
    gw = _gw(request)
    if gw.settings.auth == "open":
        raw = (body or {}).get("user") or request.headers.get("x-natter-user") or "anonymous"
        if not isinstance(raw, str):
            raise BadRequest("'user' must be a string")
        return Identity(protocol.valid_user(raw), frozenset(), None, "open")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <token> (POST /api/login gives one)")
        return await gw.auth.identify(token.strip())
    except Unauthenticated:
        limits.refuse("token", ip=request.client.host if request.client else "unknown")
        raise


def _int_param(request: Request, name: str, minimum: int = 0) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer") from None
    if value < minimum:
        raise BadRequest(f"query parameter {name!r} must be at least {minimum}")
    return value


async def list_rooms(request: Request) -> Response:
    gw = _gw(request)
    try:
        who = await _identity(request)
        bus, _ = gw.require_bus()
        await gw.refresh_rooms()
        out = []
        for room in gw.rooms():
            if not gw.may(who.name, room, "read", who.groups):
                continue
            _, last = await bus.bounds(room)
            spec = room.spec
            out.append(
                {
                    "name": room.name,
                    "namespace": room.namespace,
                    "displayName": spec.display_name or room.name,
                    "topic": spec.topic or "",
                    "maxMessageSize": spec.max_message_size,
                    "last_seq": last,
                }
            )
        return JSONResponse(out)
    except NatterError as exc:
        return problem(exc)


async def get_messages(request: Request) -> Response:
    gw = _gw(request)
    try:
        who = await _identity(request)
        bus, _ = gw.require_bus()
        room = await gw.room(request.path_params["room"])
        gw.authorize(who.name, room, "read", who.groups)
        gw.limits.check_request(who.name)
        before = _int_param(request, "before", 1)
        after = _int_param(request, "after", 0)
        if before is not None and after is not None:
            raise BadRequest("give 'before' or 'after', not both")
        limit = _int_param(request, "limit", 1) or gw.settings.history_default
        limit = min(limit, gw.settings.history_max)
        messages = await history_page(bus, room, before=before, after=after, limit=limit)
        return JSONResponse({"room": room.name, "messages": messages})
    except NatterError as exc:
        return problem(exc)


async def post_message(request: Request) -> Response:
    gw = _gw(request)
    try:
        # In jwt mode a stranger is turned away before the body is read.
        who = None if gw.settings.auth == "open" else await _identity(request)
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise TooLarge("request body too large")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest('body must be JSON: {"text": ..., "id"?: ...}') from None
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("'text' must be a non-empty string")
        raw_id = body.get("id")
        if raw_id is not None and not isinstance(raw_id, str):
            raise BadRequest("'id' must be a string")
        msg_id = protocol.valid_id(raw_id) if raw_id else uuid.uuid4().hex
        bus, _ = gw.require_bus()
        who = who or await _identity(request, body)
        user = who.name
        room = await gw.room(request.path_params["room"])
        gw.authorize(user, room, "write", who.groups)
        if len(text.encode()) > room.spec.max_message_size:
            raise TooLarge(f"text exceeds the room's limit of {room.spec.max_message_size} bytes")
        gw.limits.check_send(user)
        result = await bus.publish(
            room,
            protocol.stored_message(msg_id, user, text),
            msg_id=msg_id,
            timeout=gw.settings.publish_timeout,
        )
        return JSONResponse({"seq": result.seq, "id": msg_id}, status_code=201)
    except NatterError as exc:
        return problem(exc)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    gw = _gw(request)
    headers = {"X-Natter-Pid": str(gw.pid)}
    if gw.ready and not gw.closing:
        return PlainTextResponse("ready", headers=headers)
    reason = "shutting down" if gw.closing else "NATS or JetStream not answering"
    return PlainTextResponse(f"not ready: {reason}", status_code=503, headers=headers)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
