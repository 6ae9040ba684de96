"""What one gateway process holds: its NATS connection, room cache and hub.

The lifespan owns it: :meth:`Gateway.start` connects in the background (the
gateway serves and answers ``unavailable`` while NATS is away), and
:meth:`Gateway.close` drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Collection
from typing import Any

from nats.aio.client import Client as NATS

from natter import bus, logs, protocol
from natter.auth import Authenticator
from natter.config import Settings
from natter.errors import Forbidden, NatterError, Unavailable, UnknownRoom
from natter.gateway import limits, metrics
from natter.gateway.hub import Hub
from natter.rooms import Room, registry_key, signal_subject

log = logs.get("natter.gateway")

REGISTRY_REFRESH_SECONDS = 5.0
MISSING_ROOM_TTL = 1.0
#: Seconds after losing its NATS server that the gateway still takes sends and joins,
#: letting the bus retry them through the reconnect to another node (a failover or a
#: lame-duck hand-over takes milliseconds); after that it answers ``unavailable``.
RECONNECT_GRACE = 3.0
#: Seconds JetStream may stay silent through a connected NATS server before the
#: gateway reconnects to another server of the cluster.
SWITCH_SERVER_AFTER = 3.0


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node = f"{os.uname().nodename}-{os.getpid()}"
        self.pid = os.getpid()
        self.instance = uuid.uuid4().hex[:8]
        self.nc: NATS | None = None
        self.bus: bus.RoomBus | None = None
        self.hub: Hub | None = None
        self._registry: bus.Registry | None = None
        self._rooms: dict[str, Room] = {}
        self._missing: dict[str, float] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = False
        self.closing = False
        self.connections: set[Any] = set()
        self._disconnected_at: float | None = None
        self.auth = Authenticator(settings)
        self.limits = limits.Limits(settings)

    # lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect_loop(), name="nats-connect"))

    async def _connect_loop(self) -> None:
        attempt = 0
        while not self.closing:
            try:
                nc = await bus.connect(
                    self.settings,
                    f"natter-gateway-{self.node}",
                    on_event=self._on_nats_event,
                )
            except Unavailable as exc:
                attempt += 1
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("NATS unavailable; retrying", error=exc.message, attempt=attempt)
                await asyncio.sleep(min(2.0, 0.2 * attempt))
                continue
            self.nc = nc
            self.bus = bus.RoomBus(nc, timeout=5.0)
            self.hub = Hub(self.bus)
            self._registry = bus.Registry(nc)
            self._tasks.append(asyncio.create_task(self._readiness_loop(), name="readiness"))
            self._tasks.append(asyncio.create_task(self._registry_loop(), name="registry"))
            return

    def _on_nats_event(self, event: str) -> None:
        metrics.NATS_EVENTS.labels(event).inc()
        if event == "disconnected" and self._disconnected_at is None:
            self._disconnected_at = time.monotonic()
        elif event == "reconnected":
            self._disconnected_at = None

    async def _readiness_loop(self) -> None:
        silent_since: float | None = None
        while not self.closing:
            ok = self.nc is not None and await bus.jetstream_ready(self.nc, timeout=1.0)
            if ok != self.ready:
                log.info("readiness changed", ready=ok)
            self.ready = ok
            metrics.READY.set(1 if ok else 0)
            # Connected, but JetStream silent: this server may be cut off from the
            # cluster's majority. Move to another one rather than wait out the cut.
            now = time.monotonic()
            if ok or self.nc is None or not self.nc.is_connected:
                silent_since = None
            elif silent_since is None:
                silent_since = now
            elif now - silent_since >= SWITCH_SERVER_AFTER and len(self.nc.servers) > 1:
                log.warning(
                    "JetStream silent through this NATS server; switching servers",
                    server=str(self.nc.connected_url.netloc if self.nc.connected_url else ""),
                )
                silent_since = None
                await self.nc.force_reconnect()
            await asyncio.sleep(0.5 if ok else 0.25)

    async def _registry_loop(self) -> None:
        while not self.closing:
            try:
                await self.refresh_rooms()
            except NatterError as exc:
                log.debug("room registry refresh failed", error=exc.message)
            await asyncio.sleep(REGISTRY_REFRESH_SECONDS)

    async def close(self) -> None:
        self.closing = True
        self.ready = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.hub is not None:
            await self.hub.close()
        await self.auth.close()
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), self.settings.shutdown_grace)
        log.info("gateway closed")

    # rooms ----------------------------------------------------------------

    def require_bus(self) -> tuple[bus.RoomBus, Hub]:
        """The bus and hub, or ``unavailable`` when NATS is away.

        A reconnect is not an outage: within ``RECONNECT_GRACE`` of a disconnect the
        call goes ahead, and the bus's retries carry it over to the next server.
        """
        if self.bus is None or self.hub is None or self.nc is None or self.nc.is_closed:
            raise Unavailable("chat is temporarily unavailable (no connection to NATS)")
        if not self.nc.is_connected:
            now = time.monotonic()
            if self._disconnected_at is None:
                self._disconnected_at = now
            if now - self._disconnected_at > RECONNECT_GRACE:
                raise Unavailable("chat is temporarily unavailable (no connection to NATS)")
        elif self._disconnected_at is not None:
            self._disconnected_at = None
        return self.bus, self.hub

    async def refresh_rooms(self) -> dict[str, Room]:
        if self._registry is None:
            raise Unavailable("chat is temporarily unavailable (no connection to NATS)")
        rooms = await self._registry.all()
        self._rooms = {k: r for k, r in rooms.items() if r.namespace == self.settings.namespace}
        return self._rooms

    def rooms(self) -> list[Room]:
        return sorted(self._rooms.values(), key=lambda r: r.name)

    async def room(self, name: str) -> Room:
        key = registry_key(self.settings.namespace, name)
        room = self._rooms.get(key)
        if room is not None:
            return room
        if time.monotonic() - self._missing.get(key, -1e9) < MISSING_ROOM_TTL:
            raise UnknownRoom(f"there is no room {name!r}")
        if self._registry is None:
            raise Unavailable("chat is temporarily unavailable (no connection to NATS)")
        found = await self._lookup(name)
        if found is None:
            self._missing[key] = time.monotonic()
            raise UnknownRoom(f"there is no room {name!r}")
        self._rooms[key] = found
        return found

    @staticmethod
    def may(user: str, room: Room, action: str, groups: Collection[str] = ()) -> bool:
        """Per-room access from ``spec.access``.

        Public rooms: everyone reads; everyone but ``readOnly`` users writes. Private
        rooms: ``members`` and holders of a listed group read and write; ``readOnly``
        users only read.
        """
        access = room.spec.access
        read_only = user in access.read_only
        if access.visibility == "public":
            return action == "read" or not read_only
        member = user in access.members or not set(access.groups).isdisjoint(groups)
        return (member or read_only) if action == "read" else (member and not read_only)

    async def _lookup(self, name: str) -> Room | None:
        """Registry lookup that rides out a JetStream election (bounded by publish_timeout)."""
        assert self._registry is not None
        deadline = time.monotonic() + self.settings.publish_timeout
        delay = 0.1
        while True:
            try:
                return await self._registry.lookup(self.settings.namespace, name)
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def authorize(self, user: str, room: Room, action: str, groups: Collection[str] = ()) -> None:
        """Raise ``forbidden`` unless :meth:`may`; the refusal says nothing about the room."""
        if not self.may(user, room, action, groups):
            limits.refuse("room_access", user=user, action=action)
            raise Forbidden("you may not use this room")

    # signals --------------------------------------------------------------

    async def publish_signal(self, room: Room, kind: str, payload: dict[str, Any]) -> None:
        if self.nc is None or not self.nc.is_connected:
            raise Unavailable("chat is temporarily unavailable (no connection to NATS)")
        body = dict(payload, origin=self.instance)
        await self.nc.publish(
            signal_subject(room.namespace, room.name, kind), protocol.encode(body).encode()
        )
