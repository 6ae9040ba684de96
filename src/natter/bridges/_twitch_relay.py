"""The optional natter → Twitch direction of the bridge."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from natter import bus
from natter.bridges._ircconn import IRCConnection
from natter.bridges._twitch_metrics import RELAY_DROPPED, RELAYED
from natter.bridges._twitch_proto import TwitchSettings, backoff_delay, relay_line
from natter.errors import Unavailable, UnknownRoom
from natter.rooms import Room


class Relay:
    """Follows a room and writes natter users' messages to the Twitch channel.

    At most once: a message arriving while Twitch is away waits in a small
    queue (oldest dropped when full); Twitch's rate limit is kept with a
    sliding window of ``relay_rate`` lines per ``relay_period``.
    """

    def __init__(self, channel: str, room: Room, cfg: TwitchSettings, log: Any) -> None:
        self._channel = channel
        self._room = room
        self._cfg = cfg
        self._log = log
        labels = {"channel": channel, "room": room.name}
        self._relayed = RELAYED.labels(**labels)
        self._dropped = RELAY_DROPPED.labels(**labels)
        self._out: deque[str] = deque(maxlen=cfg.relay_buffer)
        self._sent: deque[float] = deque()
        self._wake = asyncio.Event()
        self._follower: bus.Follower | None = None

    def wake(self) -> None:
        self._wake.set()

    async def follow(self, room_bus: bus.RoomBus) -> None:
        """Start following new messages of the room, retrying until its stream answers."""
        attempt = 0
        while True:
            try:
                _, last = await room_bus.bounds(self._room)
                self._follower = await room_bus.follow(self._room, last + 1, self.on_room_message)
                self._log.info("relaying room to channel", from_seq=last + 1)
                return
            except (Unavailable, UnknownRoom) as exc:
                attempt += 1
                self._log.warning("cannot follow room for relay; retrying", error=str(exc))
                await asyncio.sleep(backoff_delay(attempt, 0.2, 5.0))

    async def stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None

    async def on_room_message(self, seq: int, data: bytes) -> None:
        try:
            doc = orjson.loads(data)
            user, text = str(doc["user"]), str(doc["text"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._log.warning("unreadable room message not relayed", seq=seq)
            return
        if doc.get("source"):
            return  # bridged in from elsewhere (maybe from this channel): never echo it
        if len(self._out) == self._out.maxlen:
            self._dropped.inc()
        self._out.append(relay_line(self._channel, user, text))
        self._wake.set()

    async def write(self, conn: IRCConnection, joined: Callable[[], bool]) -> None:
        """Send queued lines on one connection while ``joined()``; runs until cancelled."""
        while True:
            while not (self._out and joined()):
                self._wake.clear()
                await self._wake.wait()
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= self._cfg.relay_period:
                self._sent.popleft()
            if len(self._sent) >= self._cfg.relay_rate:
                await asyncio.sleep(self._cfg.relay_period - (now - self._sent[0]))
                continue
            conn.send_line(self._out.popleft())
            self._sent.append(now)
            self._relayed.inc()
            await conn.drain()
