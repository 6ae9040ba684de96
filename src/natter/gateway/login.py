"""``POST /api/login``, ``POST /api/refresh`` and ``GET /api/auth``.

Login checks a built-in user's password (argon2) and answers an access token
and a refresh token; refresh trades a refresh token for a new pair (and fails
once the user is removed from the users file). ``/api/auth`` tells the web UI
which kind of hello the server wants.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from natter import logs
from natter.auth import Issued, Unauthenticated
from natter.auth.users import User
from natter.errors import BadRequest, NatterError, TooLarge
from natter.gateway import limits
from natter.gateway.api import problem
from natter.gateway.security import client_address
from natter.gateway.state import Gateway

log = logs.get("natter.gateway.login")

MAX_LOGIN_BODY = 4096


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_LOGIN_BODY:
        raise TooLarge("request body too large")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise BadRequest(f"'{key}' must be a non-empty string")
    return value


def _answer(user: User, access: Issued, refresh: Issued) -> Response:
    return JSONResponse(
        {
            "token": access.token,
            "expires_in": access.expires_in,
            "refresh_token": refresh.token,
            "refresh_expires_in": refresh.expires_in,
            "user": user.name,
            "groups": list(user.groups),
        }
    )


async def login(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    address = client_address(request.scope)
    try:
        gw.limits.check_login(address)
        body = await _body(request)
        name, password = _string(body, "user"), _string(body, "password")
        try:
            user, access, refresh = await gw.auth.login(name, password)
        except Unauthenticated:
            limits.refuse("login_failed", ip=address, user=name[:64])
            raise
        log.info("login", user=user.name, ip=address)
        return _answer(user, access, refresh)
    except NatterError as exc:
        return problem(exc)


async def refresh(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    address = client_address(request.scope)
    try:
        gw.limits.check_login(address)
        token = _string(await _body(request), "refresh_token")
        try:
            user, access, new_refresh = await gw.auth.refresh(token)
        except Unauthenticated:
            limits.refuse("refresh_failed", ip=address)
            raise
        return _answer(user, access, new_refresh)
    except NatterError as exc:
        return problem(exc)


async def auth_info(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    oidc = gw.auth.oidc
    return JSONResponse(
        {
            "mode": gw.settings.auth,
            "login": gw.auth.logins,
            "oidc_issuer": oidc.keys.issuer if oidc is not None else None,
        }
    )
