"""OIDC tokens: RS256 (or other asymmetric) JWTs verified against the issuer's JWKS.

Keys are cached for ``jwks_cache_seconds``; a token whose ``kid`` is not in the
cache refetches the set (at most once per ``MIN_REFETCH_SECONDS``), which is how
an issuer's key rotation reaches the gateway. When the issuer cannot be reached
the last good keys stay in use.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from natter import logs
from natter.auth.tokens import LEEWAY_SECONDS, Identity, TokenError

log = logs.get("natter.auth.oidc")

MIN_REFETCH_SECONDS = 1.0
ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}


class JwksCache:
    """The issuer's signing keys by ``kid``, fetched lazily and refreshed on rotation."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None,
        *,
        ttl: float,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._ttl = ttl
        self._http = http or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched = -1e9
        self._attempted = -1e9
        self._lock = asyncio.Lock()

    async def _url(self) -> str:
        if self._jwks_url is None:
            resp = await self._http.get(
                f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
            )
            resp.raise_for_status()
            url = resp.json().get("jwks_uri")
            if not isinstance(url, str):
                raise ValueError("the discovery document has no jwks_uri")
            self._jwks_url = url
        return self._jwks_url

    async def _refresh(self) -> None:
        self._attempted = time.monotonic()
        try:
            resp = await self._http.get(await self._url())
            resp.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(resp.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log.warning("cannot fetch OIDC keys; keeping the last good ones", error=repr(exc))
            return
        self._keys = {key.key_id: key for key in keyset.keys}
        self._fetched = time.monotonic()
        log.info("OIDC keys fetched", issuer=self.issuer, kids=sorted(str(k) for k in self._keys))

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        now = time.monotonic()
        stale = now - self._fetched > self._ttl
        if stale or kid not in self._keys:
            async with self._lock:
                recently = time.monotonic() - self._attempted < MIN_REFETCH_SECONDS
                if (stale or kid not in self._keys) and not (recently and self._keys):
                    await self._refresh()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def close(self) -> None:
        await self._http.aclose()


class OidcVerifier:
    def __init__(
        self,
        keys: JwksCache,
        *,
        audience: str | None,
        algorithms: list[str],
        user_claim: str,
        groups_claim: str,
    ) -> None:
        unsafe = set(algorithms) - ASYMMETRIC
        if unsafe:
            raise ValueError(f"OIDC algorithms must be asymmetric, not {sorted(unsafe)}")
        self.keys = keys
        self.audience = audience
        self.algorithms = algorithms
        self.user_claim = user_claim
        self.groups_claim = groups_claim

    async def verify(self, token: str, header: dict[str, Any]) -> Identity:
        if header.get("alg") not in self.algorithms:
            raise TokenError("the token is not valid")
        kid = header.get("kid")
        key = await self.keys.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise TokenError("the token is not valid")
        options: jwt.types.Options = {"require": ["exp", "iat", "iss", "sub"]}
        if self.audience is None:
            options["verify_aud"] = False
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.keys.issuer,
                leeway=LEEWAY_SECONDS,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.InvalidTokenError:
            raise TokenError("the token is not valid") from None
        name = claims.get(self.user_claim) or claims.get("sub")
        groups = claims.get(self.groups_claim) or []
        if not isinstance(name, str) or not isinstance(groups, list):
            raise TokenError("the token is not valid")
        return Identity(
            name, frozenset(g for g in groups if isinstance(g, str)), float(claims["exp"]), "oidc"
        )
