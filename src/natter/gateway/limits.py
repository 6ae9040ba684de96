"""Abuse limits of one gateway process: token buckets and per-address connection counts.

* sends per user (WebSocket ``send`` and ``POST .../messages`` share one bucket),
* join/history requests per user (each one costs a JetStream consumer),
* login attempts per client address,
* open WebSockets per client address.

Every refusal is counted in ``natter_gateway_refusals_total{reason}``. Limits are
per process: behind N gateways a user's sustained rate is at most N times the
setting, and the per-address connection limit keeps N small for one client.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from natter import logs
from natter.config import Settings
from natter.errors import RateLimited
from natter.gateway import metrics

log = logs.get("natter.gateway.limits")

#: Buckets kept per limit; the least recently used full ones are forgotten beyond this.
MAX_TRACKED = 100_000


def refuse(reason: str, **fields: object) -> None:
    """Count (and log) one refusal."""
    metrics.REFUSALS.labels(reason).inc()
    log.info("refused", reason=reason, **fields)


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` answers the wait when empty."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float, cost: float = 1.0) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (cost - self.tokens) / self.rate


class Buckets:
    """One :class:`TokenBucket` per key, with a bounded number of keys."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = MAX_TRACKED) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._max = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """0 when allowed, else the seconds until one token is back."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


class ConnectionCounter:
    """Open sockets per client address; ``limit`` 0 means unlimited."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        count = self._open.get(address, 0)
        if self.limit and count >= self.limit:
            return False
        self._open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def count(self, address: str) -> int:
        return self._open.get(address, 0)


class Limits:
    """Every limit of one gateway process, configured from :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.sends = Buckets(settings.send_rate, settings.send_burst)
        self.requests = Buckets(settings.request_rate, settings.request_burst)
        self.logins = Buckets(settings.login_rate, settings.login_burst)
        self.connections = ConnectionCounter(settings.max_connections_per_ip)
        self.max_rooms = settings.max_rooms_per_connection

    @staticmethod
    def _check(buckets: Buckets, key: str, reason: str, what: str, ref: str | None) -> None:
        wait = buckets.take(key)
        if wait > 0:
            refuse(reason, key=key)
            retry = round(max(wait, 0.001), 3)
            raise RateLimited(f"{what}; retry in {retry:g}s", retry_after=retry, ref=ref)

    def check_send(self, user: str, ref: str | None = None) -> None:
        self._check(self.sends, user, "send_rate", "you are sending too fast", ref)

    def check_request(self, user: str, ref: str | None = None) -> None:
        self._check(self.requests, user, "request_rate", "too many join/history requests", ref)

    def check_login(self, address: str) -> None:
        self._check(self.logins, address, "login_rate", "too many login attempts", None)
