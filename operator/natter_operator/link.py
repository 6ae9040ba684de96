"""The operator's one NATS connection, kept in kopf's memo.

It is opened lazily (the operator starts and reports ``NatsUnavailable`` even
when NATS is away) and drained when the operator stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors

from natter import logs
from natter.bus import TRANSIENT, RoomAdmin, connect
from natter.config import Settings
from natter.errors import Unavailable

log = logs.get("natter.operator.link")
CONNECT_LIMIT_SECONDS = 5.0


class NatsLink:
    """Hands out a :class:`natter.RoomAdmin` over a live connection."""

    def __init__(self, settings: Settings, *, name: str = "natter-operator") -> None:
        self._settings = settings
        self._name = name
        self._nc: Any = None
        self._admin: RoomAdmin | None = None
        self._registry_ready = False
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    async def admin(self) -> RoomAdmin:
        """The admin API; raises :class:`Unavailable` when NATS cannot be reached now."""
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await self._connect()
                self._admin = RoomAdmin(self._nc)
                self._registry_ready = False
            if not self._nc.is_connected or self._admin is None:
                raise Unavailable(f"NATS connection to {self._settings.nats_url} is reconnecting")
            if not self._registry_ready:
                # Open (or create) the registry bucket once, before rooms reconcile
                # concurrently: parallel first-time creation makes puts time out.
                await self._admin.registry()
                self._registry_ready = True
            return self._admin

    async def _connect(self) -> Any:
        # nats-py keeps retrying the first connect as long as reconnects are allowed,
        # so bound it: the caller reports NatsUnavailable and kopf retries later.
        limit = max(CONNECT_LIMIT_SECONDS, 2 * self._settings.nats_connect_timeout)
        try:
            return await asyncio.wait_for(connect(self._settings, self._name), limit)
        except TimeoutError as exc:
            raise Unavailable(
                f"cannot connect to NATS at {self._settings.nats_url} within {limit:.0f}s"
            ) from exc

    async def close(self) -> None:
        async with self._lock:
            if self._nc is not None and not self._nc.is_closed:
                log.info("draining nats connection")
                with contextlib.suppress(*TRANSIENT, nats.errors.Error):
                    await self._nc.drain()
            self._nc, self._admin = None, None
