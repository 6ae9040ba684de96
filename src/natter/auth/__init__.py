"""Authentication: who a client is, from a token it presents (DESIGN.md "Authentication").

:class:`Authenticator` is what the gateway holds. In ``open`` mode it accepts a
nickname; in ``jwt`` mode it verifies natter's own HS256 tokens (issued by
``POST /api/login`` from the users file) and, when an issuer is configured,
OIDC tokens against the issuer's JWKS. The algorithm family is chosen by the
token's ``iss`` claim and pinned per family, never taken from the token header
alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jwt

from natter import logs, protocol
from natter.auth.oidc import JwksCache, OidcVerifier
from natter.auth.tokens import Identity, Issued, TokenError, TokenSigner
from natter.auth.users import User, UserStore
from natter.config import Settings
from natter.errors import BadRequest, Forbidden

__all__ = ["Authenticator", "Identity", "Issued", "TokenError", "Unauthenticated"]

log = logs.get("natter.auth")

#: Password checks (argon2, deliberately slow) running at once in one process.
VERIFY_CONCURRENCY = 2


class Unauthenticated(Forbidden):
    """No valid credentials: ``forbidden`` on the socket, ``401`` over HTTP."""

    http_status = 401


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth
        self.users = UserStore(Path(settings.users_file)) if settings.users_file else None
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self.signer = (
            TokenSigner(
                secret,
                issuer=settings.jwt_issuer,
                access_ttl=settings.token_ttl,
                refresh_ttl=settings.refresh_ttl,
            )
            if secret
            else None
        )
        self.oidc: OidcVerifier | None = None
        if settings.oidc_issuer:
            keys = JwksCache(
                settings.oidc_issuer, settings.oidc_jwks_url, ttl=settings.jwks_cache_seconds
            )
            self.oidc = OidcVerifier(
                keys,
                audience=settings.oidc_audience,
                algorithms=[a.strip() for a in settings.oidc_algorithms.split(",") if a.strip()],
                user_claim=settings.oidc_user_claim,
                groups_claim=settings.oidc_groups_claim,
            )
        if self.mode == "jwt" and self.signer is None and self.oidc is None:
            raise ValueError("NATTER_AUTH=jwt needs NATTER_JWT_SECRET or NATTER_OIDC_ISSUER")
        if self.users is not None and self.signer is None:
            raise ValueError("NATTER_USERS_FILE needs NATTER_JWT_SECRET to sign login tokens")
        self._verifying = asyncio.Semaphore(VERIFY_CONCURRENCY)

    @property
    def logins(self) -> bool:
        return self.mode == "jwt" and self.users is not None and self.signer is not None

    # verifying ------------------------------------------------------------

    async def identify(self, token: str | None, nickname: str | None = None) -> Identity:
        """Who the client is; raises :class:`Unauthenticated` (code ``forbidden``)."""
        if self.mode == "open":
            if nickname is None:
                raise BadRequest("this server runs in open mode: hello needs 'user'")
            return Identity(protocol.valid_user(nickname), frozenset(), None, "open")
        if not token:
            raise Unauthenticated("this server needs a token: log in first")
        try:
            identity = await self.verify(token)
            name = protocol.valid_user(identity.name)
        except TokenError as exc:
            raise Unauthenticated(str(exc)) from None
        except BadRequest:
            raise Unauthenticated("the token names a user natter cannot show") from None
        return Identity(name, identity.groups, identity.expires_at, identity.source)

    async def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise TokenError("the token is not valid") from None
        if self.oidc is not None and unverified.get("iss") == self.oidc.keys.issuer:
            return await self.oidc.verify(token, header)
        if self.signer is None:
            raise TokenError("the token is not valid")
        return self.signer.verify(token, "access")

    # logging in -----------------------------------------------------------

    async def login(self, name: str, password: str) -> tuple[User, Issued, Issued]:
        if not self.logins or self.users is None or self.signer is None:
            raise Unauthenticated("this server has no built-in users; use your identity provider")
        async with self._verifying:
            user = await asyncio.to_thread(self.users.verify, name, password)
        if user is None:
            raise Unauthenticated("wrong user name or password")
        return user, *self._pair(user)

    async def refresh(self, refresh_token: str) -> tuple[User, Issued, Issued]:
        if not self.logins or self.users is None or self.signer is None:
            raise Unauthenticated("this server has no built-in users")
        try:
            identity = self.signer.verify(refresh_token, "refresh")
        except TokenError as exc:
            raise Unauthenticated(str(exc)) from None
        user = await asyncio.to_thread(self.users.get, identity.name)
        if user is None:
            raise Unauthenticated("that user no longer exists")
        return user, *self._pair(user)

    def _pair(self, user: User) -> tuple[Issued, Issued]:
        assert self.signer is not None
        return (
            self.signer.issue(user.name, user.groups, "access"),
            self.signer.issue(user.name, user.groups, "refresh"),
        )

    async def close(self) -> None:
        if self.oidc is not None:
            await self.oidc.keys.close()
