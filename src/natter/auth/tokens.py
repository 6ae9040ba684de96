"""natter's own tokens: HS256 JWTs issued by ``POST /api/login`` and ``/api/refresh``.

An access token (``typ: access``) is short-lived and opens sockets and API calls;
a refresh token (``typ: refresh``) only buys a new pair. Verification pins the
algorithm, issuer and audience and requires every time claim, so a token signed
with another key or algorithm, an expired one, or a refresh token used as an
access token is refused.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

MIN_SECRET_BYTES = 32
LEEWAY_SECONDS = 5
TokenType = Literal["access", "refresh"]


class TokenError(Exception):
    """A token that must not be accepted; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token names. ``name`` never comes from the client."""

    name: str
    groups: frozenset[str]
    expires_at: float | None  # epoch seconds; None for open-mode nicknames
    source: str  # "natter", "oidc" or "open"


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_in: int


class TokenSigner:
    """Issues and verifies natter's HS256 tokens with one shared secret."""

    def __init__(self, secret: str, *, issuer: str, access_ttl: int, refresh_ttl: int) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        self._key = secret.encode()
        self.issuer = issuer
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(self, name: str, groups: tuple[str, ...] | list[str], typ: TokenType) -> Issued:
        now = int(time.time())
        ttl = self.access_ttl if typ == "access" else self.refresh_ttl
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.issuer,
            "sub": name,
            "groups": list(groups),
            "typ": typ,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        return Issued(jwt.encode(claims, self._key, algorithm="HS256"), ttl)

    def verify(self, token: str, typ: TokenType = "access") -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=self.issuer,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.InvalidTokenError:
            raise TokenError("the token is not valid") from None
        if claims.get("typ") != typ:
            raise TokenError(f"this is not an {typ} token")
        name, groups = claims.get("sub"), claims.get("groups") or []
        if not isinstance(name, str) or not isinstance(groups, list):
            raise TokenError("the token is not valid")
        return Identity(
            name, frozenset(g for g in groups if isinstance(g, str)), float(claims["exp"]), "natter"
        )
