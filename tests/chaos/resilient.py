"""A chat client that survives faults the way a real one should, recording everything.

:class:`RecordingClient` is the fixtures' :class:`ChatClient` with a hook on
every frame as it arrives. :class:`ResilientClient` keeps one of those open:
when the socket drops it reconnects with exponential backoff and full jitter,
to any of the gateway URLs (so it lands on a surviving worker), says hello,
and rejoins each room with ``since`` = the last seq it saw. A send is retried
with the same id until it is acked, across ``unavailable`` errors, timeouts
and reconnects, as DESIGN.md's dedup contract allows.

Every send, ack, error and delivered message goes into a
:class:`tests.chaos.checker.History`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websockets

from tests.chaos.checker import Ack, Delivery, ErrorFrame, History, Sent, Session
from tests.fixtures.client import ChatClient

FrameHook = Callable[[dict[str, Any]], None]

#: Seconds a send waits for its ack before sending the same id again. Longer than
#: the gateway's own publish retry (NATTER_PUBLISH_TIMEOUT, 10 s by default).
ACK_TIMEOUT = 15.0
#: Seconds a (re)join may take before the client gives up on that connection.
JOIN_TIMEOUT = 20.0


def _joined(room: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame["type"] == "joined" and frame.get("room") == room


class RecordingClient(ChatClient):
    """A :class:`ChatClient` that hands each frame to ``on_frame`` as it arrives."""

    def __init__(self, url: str, user: str, on_frame: FrameHook) -> None:
        super().__init__(url, user)
        self.on_frame = on_frame

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                data = json.loads(raw)
                for frame in data if isinstance(data, list) else [data]:
                    self.frames.append(frame)
                    self.on_frame(frame)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = (self.ws.close_code, self.ws.close_reason)
            self._changed.set()

    async def wait_closed(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._reader)


@dataclass
class Backoff:
    """Exponential backoff with full jitter: sleep U(0, min(cap, base * 2**attempt))."""

    base: float = 0.05
    cap: float = 2.0
    rng: random.Random | None = None

    def delay(self, attempt: int) -> float:
        rng = self.rng or random
        return rng.uniform(0, min(self.cap, self.base * 2**attempt))


class SendFailed(Exception):
    """The gateway refused a send for good (anything but ``unavailable``)."""


class ResilientClient:
    """One user's session that reconnects, resumes and retries until told to stop."""

    def __init__(
        self,
        name: str,
        urls: list[str],
        rooms: list[str],
        history: History,
        *,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        first: int = 0,
    ) -> None:
        self.name = name
        self.urls = urls
        #: Index of the URL to connect to first (spreads clients over gateways);
        #: reconnects pick at random among all of them.
        self.first = first
        self.rooms = rooms
        self.history = history
        self.rng = rng or random.Random(name)
        self.backoff = backoff or Backoff(rng=self.rng)
        self.last_seq: dict[str, int] = dict.fromkeys(rooms, 0)
        self.conn: RecordingClient | None = None
        self.conn_no = 0
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._progress = asyncio.Event()

    # connection --------------------------------------------------------------

    async def start(self) -> ResilientClient:
        self._task = asyncio.create_task(self._run(), name=f"client-{self.name}")
        return self

    async def stop(self) -> None:
        self._stopping = True
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            conn = await self._open()
            if conn is None:
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            attempt = 0
            self.connected.set()
            await conn.wait_closed()
            self.connected.clear()
            self._lost(conn)
            if self._stopping:
                return
            self.reconnects += 1
            # The first retry is quick but jittered, so clients of a dead worker spread out.
            await asyncio.sleep(self.backoff.delay(0))

    async def _open(self) -> RecordingClient | None:
        """Connect to one of the gateways, hello, and (re)join every room."""
        url = (
            self.urls[self.first % len(self.urls)]
            if self.conn_no == 0
            else self.rng.choice(self.urls)
        )
        self.conn_no += 1
        conn_no = self.conn_no
        conn = RecordingClient(url, self.name, lambda f: self._on_frame(conn_no, f))
        try:
            await conn.connect()
            welcome = conn.welcome or {}
            self.history.sessions.append(
                Session(self.name, conn_no, url, str(welcome.get("node", "")), time.monotonic())
            )
            self.conn = conn
            for room in self.rooms:
                since = self.last_seq[room]
                self.history.joined_from[self.name].setdefault(room, since)
                await conn.request(
                    {"type": "join", "room": room, "since": since}, _joined(room), JOIN_TIMEOUT
                )
        except (OSError, TimeoutError, ConnectionError, websockets.WebSocketException) as exc:
            self.history.closed_session(self.name, conn_no, f"open failed: {exc!r}")
            self.conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            if conn.ws is not None:
                self._lost(conn)
            return None
        return conn

    def _lost(self, conn: RecordingClient) -> None:
        reason = f"closed {conn.closed}"
        self.history.closed_session(self.name, self.conn_no, reason)
        if self.conn is conn:
            self.conn = None
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result({"type": "disconnected"})

    # frames ---------------------------------------------------------------------

    def _on_frame(self, conn: int, frame: dict[str, Any]) -> None:
        now = time.monotonic()
        kind = frame.get("type")
        if kind == "message":
            room = str(frame["room"])
            seq = int(frame["seq"])
            self.history.deliveries.append(
                Delivery(
                    self.name,
                    room,
                    seq,
                    str(frame.get("id")),
                    str(frame.get("user")),
                    str(frame.get("text")),
                    conn,
                    now,
                )
            )
            self.last_seq[room] = max(self.last_seq.get(room, 0), seq)
            self._progress.set()
        elif kind == "ack":
            ack = Ack(self.name, str(frame["room"]), str(frame["id"]), int(frame["seq"]), conn, now)
            self.history.acks.append(ack)
            self._resolve(ack.id, frame)
        elif kind == "error":
            ref = frame.get("ref")
            self.history.errors.append(
                ErrorFrame(
                    self.name, str(frame.get("code")), ref, str(frame.get("message")), conn, now
                )
            )
            if ref is not None:
                self._resolve(str(ref), frame)

    def _resolve(self, msg_id: str, frame: dict[str, Any]) -> None:
        waiter = self._waiters.get(msg_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(frame)

    # sending --------------------------------------------------------------------

    async def send(self, room: str, text: str, msg_id: str, *, deadline: float = 90.0) -> int:
        """Send until acked; returns the seq. Raises TimeoutError after ``deadline`` seconds."""
        self.history.sent.append(Sent(self.name, self.name, room, msg_id, text, time.monotonic()))
        give_up = time.monotonic() + deadline
        attempt = 0
        while True:
            remaining = give_up - time.monotonic()
            if remaining <= 0 or self._stopping:
                raise TimeoutError(f"{self.name}: {msg_id} not acked within {deadline}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), remaining)
            conn = self.conn
            if conn is None:
                continue
            waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._waiters[msg_id] = waiter
            try:
                await conn.send_frame({"type": "send", "room": room, "id": msg_id, "text": text})
                answer = await asyncio.wait_for(waiter, min(ACK_TIMEOUT, remaining))
            except (TimeoutError, websockets.ConnectionClosed):
                answer = {"type": "timeout"}
            finally:
                self._waiters.pop(msg_id, None)
            if answer["type"] == "ack":
                return int(answer["seq"])
            if answer["type"] == "error" and answer.get("code") == "rate_limited":
                await asyncio.sleep(float(answer.get("retry_after") or 0.1))
                continue
            if answer["type"] == "error" and answer.get("code") != "unavailable":
                raise SendFailed(f"{self.name}: {msg_id} refused: {answer}")
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1

    # catching up ----------------------------------------------------------------

    async def caught_up(self, targets: dict[str, int], timeout: float) -> bool:
        """Wait until this client has seen ``targets[room]`` in every room."""
        deadline = time.monotonic() + timeout
        while any(self.last_seq.get(room, 0) < seq for room, seq in targets.items()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 0.5))
        return True
