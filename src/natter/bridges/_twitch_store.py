"""The bridge's way into the room: a bounded buffer and the loop that stores it.

Nothing put here is dropped for want of NATS: the head of the buffer is
published (``Nats-Msg-Id`` = its id) and retried until JetStream acknowledges
it. A full buffer makes :meth:`RoomWriter.put` wait, which pauses the reader
upstream instead of discarding what it already received.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from natter import bus
from natter.bridges._twitch_metrics import BUFFERED, DUPLICATES, PUBLISHED, REJECTED
from natter.bridges._twitch_proto import backoff_delay
from natter.config import Settings
from natter.errors import TooLarge, Unavailable, UnknownRoom
from natter.rooms import Room


@dataclass(frozen=True, slots=True)
class Pending:
    msg_id: str
    payload: bytes


class RoomWriter:
    def __init__(
        self,
        room: Room,
        settings: Settings,
        *,
        size: int,
        publish_timeout: float,
        name: str,
        labels: dict[str, str],
        log: Any,
    ) -> None:
        self.room = room
        self._settings = settings
        self._timeout = publish_timeout
        self._name = name
        self._log = log
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=size)
        self._inflight = False
        self._ready = asyncio.Event()
        self.nc: Any = None
        self.bus: bus.RoomBus | None = None
        self._buffered = BUFFERED.labels(**labels)
        self._published = PUBLISHED.labels(**labels)
        self._duplicates = DUPLICATES.labels(**labels)
        self._rejected = REJECTED.labels(**labels)

    @property
    def held(self) -> int:
        """Messages received but not yet stored (waiting, or being published)."""
        return self._queue.qsize() + int(self._inflight)

    @property
    def buffered(self) -> int:
        return self._queue.qsize()

    @property
    def connected(self) -> bool:
        return self.nc is not None and bool(self.nc.is_connected)

    async def put(self, item: Pending) -> None:
        if self._queue.full():
            self._log.warning("buffer full; pausing reads from twitch", size=self._queue.maxsize)
        await self._queue.put(item)
        self._buffered.set(self._queue.qsize())

    async def connect(self) -> bus.RoomBus:
        """Connect to NATS, retrying while it is unavailable; nats-py reconnects after that."""
        attempt = 0
        while self.nc is None:
            try:
                self.nc = await bus.connect(self._settings, name=self._name)
            except Unavailable as exc:
                attempt += 1
                delay = backoff_delay(attempt, 0.2, 5.0)
                self._log.warning(
                    "nats unavailable; retrying",
                    attempt=attempt,
                    error=str(exc),
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)
        self.bus = bus.RoomBus(self.nc)
        self._ready.set()
        return self.bus

    async def run(self) -> None:
        """Store buffered messages in order, forever."""
        await self._ready.wait()
        assert self.bus is not None
        while True:
            item = await self._queue.get()
            self._inflight = True
            try:
                await self._store(self.bus, item)
            finally:
                self._inflight = False
                self._queue.task_done()
                self._buffered.set(self._queue.qsize())

    async def _store(self, room_bus: bus.RoomBus, item: Pending) -> None:
        attempt, holding = 0, False
        while True:
            try:
                result = await room_bus.publish(
                    self.room, item.payload, msg_id=item.msg_id, timeout=self._timeout
                )
            except TooLarge as exc:
                self._rejected.inc()
                self._log.error("room refused message", msg_id=item.msg_id, error=str(exc))
                return
            except (Unavailable, UnknownRoom) as exc:
                attempt += 1
                if not holding:
                    self._log.warning(
                        "cannot store; holding messages", error=str(exc), held=self.held
                    )
                    holding = True
                await asyncio.sleep(backoff_delay(attempt, 0.1, 2.0))
                continue
            if holding:
                self._log.info("storing again", held=self.held)
            (self._duplicates if result.duplicate else self._published).inc()
            return

    async def flush(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for the buffer to be stored; how many were not."""
        try:
            async with asyncio.timeout(grace):
                await self._queue.join()
        except TimeoutError:
            return self.held
        return 0

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self.nc.drain()
