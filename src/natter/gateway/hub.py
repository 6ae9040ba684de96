"""Per-room fan-out: one stream consumer per room per process, many sockets.

A :class:`RoomFeed` follows a room's stream with one ordered consumer, keeps its
own cursor (``last``) and never passes on a gap: a missing seq is read back from
the stream first, a repeated one dropped. Each message is serialized once and
offered to every :class:`Member` (a socket in that room), which keeps a cursor
of its own so that replay on join hands over to live delivery with no gap and
no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Protocol

import orjson
from nats.aio.msg import Msg

from natter import logs, protocol
from natter.bus import Follower, RoomBus
from natter.errors import NatterError, Unavailable
from natter.gateway import metrics
from natter.rooms import Room, signal_subject

log = logs.get("natter.gateway.hub")

RECENT_FRAMES = 512
WATCHDOG_SECONDS = 2.0


class Sink(Protocol):
    """What a member needs of its socket."""

    user: str | None

    def push(self, frame: str) -> None: ...

    async def push_wait(self, frame: str) -> None: ...


class Member:
    """One socket's subscription to one room, with its own delivery cursor."""

    def __init__(self, sink: Sink, next_seq: int) -> None:
        self.sink = sink
        self.next_seq = next_seq
        self.replaying = True
        self._held: list[tuple[int, str]] = []

    def offer(self, seq: int, frame: str) -> None:
        if self.replaying:
            self._held.append((seq, frame))
        elif seq >= self.next_seq:
            # The feed is gap-free, so a live member always gets next_seq here.
            self.next_seq = seq + 1
            self.sink.push(frame)

    async def deliver(self, seq: int, frame: str) -> None:
        """Replay path: deliver with backpressure, skipping what was already sent."""
        if seq >= self.next_seq:
            self.next_seq = seq + 1
            await self.sink.push_wait(frame)

    def abandon(self) -> None:
        self._held = []

    def go_live(self) -> None:
        held, self._held = self._held, []
        self.replaying = False
        for seq, frame in held:
            self.offer(seq, frame)


class RoomFeed:
    """The live feed of one room in this process."""

    def __init__(self, bus: RoomBus, room: Room) -> None:
        self.bus = bus
        self.room = room
        self.last = 0
        self.members: dict[int, Member] = {}
        self._recent: deque[tuple[int, str]] = deque(maxlen=RECENT_FRAMES)
        self._follower: Follower | None = None
        self._lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._signals: Any = None

    async def start(self) -> None:
        _, self.last = await self.bus.bounds(self.room)
        self._follower = await self.bus.follow(self.room, self.last + 1, self._on_message)
        self._signals = await self.bus.nc.subscribe(
            signal_subject(self.room.namespace, self.room.name, "typing"), cb=self._on_typing
        )
        self._watchdog = asyncio.create_task(self._watch(), name=f"feed-watchdog-{self.room.key}")
        log.info("room feed started", room=self.room.key, last_seq=self.last)

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._follower is not None:
            await self._follower.stop()
        if self._signals is not None:
            with contextlib.suppress(Exception):
                await self._signals.unsubscribe()
        log.info("room feed stopped", room=self.room.key)

    async def _on_message(self, seq: int, data: bytes) -> None:
        async with self._lock:
            if seq <= self.last:
                return
            if seq > self.last + 1:
                await self._fill(seq - 1)
            self._dispatch(seq, data)

    async def _on_typing(self, msg: Msg) -> None:
        try:
            user = orjson.loads(msg.data).get("user")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if not isinstance(user, str):
            return
        frame = protocol.encode({"type": "typing", "room": self.room.name, "user": user})
        for member in list(self.members.values()):
            if member.sink.user != user and not member.replaying:
                member.sink.push(frame)

    async def _fill(self, until: int) -> None:
        """Read ``last+1 .. until`` from the stream and dispatch it (lock held)."""
        metrics.GAP_FILLS.inc()
        log.info("filling seq gap from stream", room=self.room.key, start=self.last + 1, end=until)
        async for seq, data in self.bus.iter_range(self.room, self.last + 1, until):
            if seq > self.last:
                self._dispatch(seq, data)
        # Seqs removed by retention are skipped for good.
        self.last = max(self.last, until)

    def _dispatch(self, seq: int, data: bytes) -> None:
        frame = protocol.message_frame(self.room.name, seq, data)
        self.last = seq
        self._recent.append((seq, frame))
        for member in list(self.members.values()):
            member.offer(seq, frame)

    async def _watch(self) -> None:
        """Catch up from the stream when the consumer falls silent behind it."""
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            try:
                _, stream_last = await self.bus.bounds(self.room)
                if stream_last <= self.last:
                    continue
                seen = self.last
                await asyncio.sleep(WATCHDOG_SECONDS / 2)
                if self.last == seen:
                    async with self._lock:
                        if self.last < stream_last:
                            await self._fill(stream_last)
            except NatterError as exc:
                log.debug(
                    "feed watchdog cannot reach the stream", room=self.room.key, error=str(exc)
                )
            except Exception:
                log.exception("feed watchdog failed", room=self.room.key)

    async def join(self, key: int, member: Member) -> None:
        """Add a member and replay to it everything from its cursor to the live tip.

        On failure the member is removed with its cursor advanced past what it
        got, so a retry with the same member sends nothing twice.
        """
        member.replaying = True
        self.members[key] = member
        target = self.last
        try:
            if member.next_seq <= target:
                await self._replay(member, member.next_seq, target)
        except BaseException:
            self.members.pop(key, None)
            member.abandon()
            raise
        member.go_live()

    async def _replay(self, member: Member, start: int, target: int) -> None:
        recent = self._recent
        if recent and recent[0][0] <= start:
            for seq, frame in list(recent):
                if start <= seq <= target:
                    await member.deliver(seq, frame)
            return
        async for seq, data in self.bus.iter_range(self.room, start, target):
            await member.deliver(seq, protocol.message_frame(self.room.name, seq, data))

    def leave(self, key: int) -> None:
        self.members.pop(key, None)


class Hub:
    """All room feeds of this gateway process."""

    def __init__(self, bus: RoomBus) -> None:
        self.bus = bus
        self.feeds: dict[str, RoomFeed] = {}
        self._starting: dict[str, asyncio.Task[RoomFeed]] = {}

    async def feed(self, room: Room) -> RoomFeed:
        feed = self.feeds.get(room.key)
        if feed is not None:
            return feed
        task = self._starting.get(room.key)
        if task is None:
            task = asyncio.create_task(self._start(room))
            self._starting[room.key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._starting.pop(room.key, None)

    async def _start(self, room: Room) -> RoomFeed:
        feed = RoomFeed(self.bus, room)
        await feed.start()
        self.feeds[room.key] = feed
        metrics.ROOM_FEEDS.set(len(self.feeds))
        return feed

    def tip(self, room: Room) -> int | None:
        """The last seq this process delivered in ``room``, when it already follows it."""
        feed = self.feeds.get(room.key)
        return None if feed is None else feed.last

    async def join(self, room: Room, key: int, member: Member) -> None:
        try:
            feed = await self.feed(room)
        except NatterError:
            raise
        except Exception as exc:
            raise Unavailable(f"cannot follow room {room.name}: {exc!r}") from exc
        await feed.join(key, member)

    def leave(self, room: Room, key: int) -> None:
        feed = self.feeds.get(room.key)
        if feed is not None:
            feed.leave(key)

    async def close(self) -> None:
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            await feed.stop()
        metrics.ROOM_FEEDS.set(0)
