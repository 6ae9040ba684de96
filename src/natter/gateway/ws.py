"""``GET /ws``: one :class:`Connection` per socket.

The reader loop parses frames and answers each; the writer task drains a
bounded queue, batching whatever is waiting into one WebSocket message. A bad
frame gets an ``error`` frame and the socket stays open; a socket that stops
reading is dropped (close 1008) once its queue is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from natter import logs, protocol
from natter.errors import BadRequest, Forbidden, NatterError, TooLarge, Unavailable
from natter.gateway import limits, metrics
from natter.gateway.hub import Member
from natter.gateway.state import Gateway
from natter.rooms import Room

log = logs.get("natter.gateway.ws")

_ids = itertools.count(1)
BATCH_MAX = 256
SEND_CONCURRENCY = 64


class Connection:
    def __init__(self, ws: WebSocket, gw: Gateway) -> None:
        self.ws = ws
        self.gw = gw
        self.key = next(_ids)
        self.user: str | None = None
        self.groups: frozenset[str] = frozenset()
        self.expires_at: float | None = None  # the token's exp (epoch seconds)
        self.address = ws.client.host if ws.client else "unknown"
        self._failed_hellos = 0
        self.rooms: dict[str, tuple[Room, Member | None]] = {}
        self._queue: list[str] = []  # a list: an empty deque costs 700 bytes per socket
        # Idle sockets hold no writer task and no events: a writer runs only while
        # frames wait, and the event exists only once a replay had to wait for room.
        self._writer: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._closed = False
        self._limit = gw.settings.send_queue_max
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sending = asyncio.Semaphore(SEND_CONCURRENCY)

    @property
    def log(self) -> Any:
        """This socket's logger (bound when used: a bound logger per idle socket costs)."""
        return log.bind(conn=self.key, user=self.user) if self.user else log.bind(conn=self.key)

    # output ---------------------------------------------------------------

    def push(self, frame: str) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._limit:
            self._overflow()
            return
        self._queue.append(frame)
        metrics.OUTBOUND.queued += 1
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())

    async def push_wait(self, frame: str) -> None:
        while len(self._queue) >= self._limit // 2 and not self._closed:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()
        self.push(frame)

    def _wake(self) -> None:
        if self._drained is not None:
            self._drained.set()

    def _overflow(self) -> None:
        metrics.SLOW_CONSUMERS.inc()
        self.log.warning("dropping slow consumer", queued=len(self._queue))
        self._closed = True
        self._wake()
        task = asyncio.create_task(self._close(1008, "slow consumer: send queue full"))
        self._tasks.add(task)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.close(code, reason)

    async def _drain(self) -> None:
        """Send what waits, whatever queued up meanwhile as one batch; end when empty."""
        queue, out, send = self._queue, metrics.OUTBOUND, self.ws.send_text
        try:
            while queue and not self._closed:
                count = min(len(queue), BATCH_MAX)
                payload = queue[0] if count == 1 else protocol.batch(queue[:count])
                del queue[:count]
                out.queued -= count
                if len(queue) < self._limit // 2:
                    self._wake()
                await send(payload)
                out.frames += count
                out.messages += 1
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:  # the socket is gone
            self.log.debug("send failed; closing", error=repr(exc))
            self._closed = True
            self._wake()
        finally:
            self._writer = None
        if self._closed:
            out.queued -= len(queue)
            queue.clear()

    def error(self, exc: NatterError) -> None:
        metrics.ERRORS.labels(exc.code).inc()
        self.push(protocol.error_frame(exc))

    # input ----------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        metrics.CONNECTIONS.inc()
        metrics.CONNECTIONS_TOTAL.inc()
        self.gw.connections.add(self)
        self._deadline = asyncio.get_running_loop().call_later(
            self.gw.settings.hello_timeout, lambda: self._spawn(self._deadlines())
        )
        try:
            while not self._closed:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                await self._handle(raw)
        except WebSocketDisconnect:
            pass
        except RuntimeError as exc:  # receive after close
            self.log.debug("socket closed under the reader", error=str(exc))
        finally:
            self._closed = True
            self._wake()
            if self._deadline is not None:
                self._deadline.cancel()
            for name, (room, _) in self.rooms.items():
                if self.gw.hub is not None:
                    self.gw.hub.leave(room, self.key)
                self.log.debug("left on close", room=name)
            for task in list(self._tasks):
                task.cancel()
            writer = self._writer
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
            metrics.OUTBOUND.queued -= len(self._queue)
            self._queue.clear()
            self.gw.connections.discard(self)
            metrics.CONNECTIONS.dec()

    async def _handle(self, raw: str | bytes) -> None:
        if len(raw) > self.gw.settings.max_frame_bytes:
            metrics.FRAMES_IN.labels("oversize").inc()
            self.error(TooLarge(f"frame exceeds {self.gw.settings.max_frame_bytes} bytes"))
            return
        try:
            frame = protocol.parse(raw)
        except NatterError as exc:
            metrics.FRAMES_IN.labels("invalid").inc()
            self.error(exc)
            return
        kind = type(frame).__name__.lower()
        metrics.FRAMES_IN.labels(kind).inc()
        try:
            if isinstance(frame, protocol.Hello):
                await self._hello(frame)
                return
            if self.user is None:
                raise BadRequest("say hello first", ref=getattr(frame, "id", None))
            if isinstance(frame, protocol.Join):
                await self._join(frame)
            elif isinstance(frame, protocol.Send):
                await self._send(frame)
            elif isinstance(frame, protocol.History):
                self._spawn(self._history(frame))
            elif isinstance(frame, protocol.Leave):
                self._leave(frame.room)
            elif isinstance(frame, protocol.Typing):
                await self._typing(frame)
        except NatterError as exc:
            if exc.ref is None and isinstance(frame, protocol.Send):
                exc.ref = frame.id
            self.error(exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except NatterError as exc:
            self.error(exc)
        except Exception:
            self.log.exception("frame handler failed")
            self.error(Unavailable("internal error; try again"))

    async def _hello(self, frame: protocol.Hello) -> None:
        """Identify the socket; in jwt mode a later hello with a fresh token extends it."""
        if self.user is not None and self.expires_at is None:
            raise BadRequest("hello was already said on this connection")
        try:
            identity = await self.gw.auth.identify(frame.token, frame.user)
        except Forbidden:
            self._failed_hellos += 1
            limits.refuse("token", ip=self.address)
            if self._failed_hellos >= self.gw.settings.max_failed_hellos:
                self._spawn(self._close(1008, "too many refused hellos"))
            raise
        if self.user is not None and identity.name != self.user:
            raise BadRequest("a new token must name the same user")
        self.user, self.groups = identity.name, identity.groups
        self.expires_at = identity.expires_at
        self.push(
            protocol.encode(
                {"type": "welcome", "user": self.user, "node": self.gw.pid, "gateway": self.gw.node}
            )
        )

    async def _deadlines(self) -> None:
        """Close a socket that never says hello, or whose token expires unrefreshed.

        Started by a timer ``hello_timeout`` after accept (a timer, not a sleeping
        task, keeps an idle socket small).
        """
        if self.user is None:
            limits.refuse("hello_timeout", ip=self.address)
            await self._close(1008, "no hello")
            return
        while self.expires_at is not None:
            wait = self.expires_at - time.time()
            if wait <= 0:
                limits.refuse("token_expired", user=self.user)
                await self._close(1008, "token expired")
                return
            await asyncio.sleep(wait)

    async def _join(self, frame: protocol.Join) -> None:
        if frame.room not in self.rooms and len(self.rooms) >= self.gw.limits.max_rooms:
            limits.refuse("max_rooms", user=self.user)
            raise BadRequest(f"a connection may join at most {self.gw.limits.max_rooms} rooms")
        _, hub = self.gw.require_bus()
        assert self.user is not None
        self.gw.limits.check_request(self.user)
        room = await self.gw.room(frame.room)
        self.gw.authorize(self.user, room, "read", self.groups)
        if frame.room in self.rooms:
            hub.leave(room, self.key)
        self.rooms[frame.room] = (room, None)
        self._spawn(self._do_join(room, frame))

    async def _do_join(self, room: Room, frame: protocol.Join) -> None:
        """Replay then follow; while NATS is away, keep retrying from the member's cursor."""
        member: Member | None = None
        delay, warned = 0.1, False
        while frame.room in self.rooms and not self._closed:
            try:
                bus, hub = self.gw.require_bus()
                if member is None:
                    # A followed room's tip is known here: no JetStream request per join.
                    tip = hub.tip(room)
                    first, last = (1, tip) if tip is not None else await bus.bounds(room)
                    if frame.since is not None:
                        start = frame.since + 1
                    else:
                        wanted = (
                            self.gw.settings.history_default
                            if frame.history is None
                            else frame.history
                        )
                        start = max(first, last - min(wanted, self.gw.settings.history_max) + 1)
                    self.push(
                        protocol.encode({"type": "joined", "room": room.name, "last_seq": last})
                    )
                    member = Member(self, start)
                await hub.join(room, self.key, member)
            except Unavailable as exc:
                if not warned:
                    warned = True
                    self.error(Unavailable(f"room {room.name}: {exc.message}; retrying"))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if frame.room in self.rooms:
                self.rooms[frame.room] = (room, member)
            else:  # left while replaying
                hub.leave(room, self.key)
            return

    async def _send(self, frame: protocol.Send) -> None:
        self.gw.require_bus()
        room = await self.gw.room(frame.room)
        assert self.user is not None
        self.gw.authorize(self.user, room, "write", self.groups)
        msg_id = frame.id or uuid.uuid4().hex
        if len(frame.text.encode()) > room.spec.max_message_size:
            raise TooLarge(
                f"text exceeds the room's limit of {room.spec.max_message_size} bytes", ref=msg_id
            )
        self.gw.limits.check_send(self.user, ref=msg_id)
        await self._sending.acquire()
        self._spawn(self._publish(room, msg_id, frame.text))

    async def _publish(self, room: Room, msg_id: str, text: str) -> None:
        try:
            bus, _ = self.gw.require_bus()
            assert self.user is not None
            started = time.perf_counter()
            try:
                result = await bus.publish(
                    room,
                    protocol.stored_message(msg_id, self.user, text),
                    msg_id=msg_id,
                    timeout=self.gw.settings.publish_timeout,
                )
            except NatterError as exc:
                exc.ref = msg_id
                raise
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
            if result.duplicate:
                await self._check_duplicate(room, msg_id, result.seq)
            self.push(
                protocol.encode({"type": "ack", "id": msg_id, "room": room.name, "seq": result.seq})
            )
        finally:
            self._sending.release()

    async def _check_duplicate(self, room: Room, msg_id: str, seq: int) -> None:
        """A retried id answers the original seq, but only for the user who sent it."""
        bus, _ = self.gw.require_bus()
        stored = await bus.read(room, seq, seq)
        if stored:
            fields = protocol.message_fields(room.name, seq, stored[0][1])
            if fields.get("user") != self.user:
                raise BadRequest("that message id is already used; pick another", ref=msg_id)

    async def _history(self, frame: protocol.History) -> None:
        bus, _ = self.gw.require_bus()
        assert self.user is not None
        self.gw.limits.check_request(self.user)
        room = await self.gw.room(frame.room)
        self.gw.authorize(self.user, room, "read", self.groups)
        limit = min(frame.limit or self.gw.settings.history_default, self.gw.settings.history_max)
        messages = await history_page(bus, room, before=frame.before, after=None, limit=limit)
        self.push(protocol.encode({"type": "history", "room": room.name, "messages": messages}))

    def _leave(self, name: str) -> None:
        entry = self.rooms.pop(name, None)
        if entry is not None and self.gw.hub is not None:
            self.gw.hub.leave(entry[0], self.key)
        self.push(protocol.encode({"type": "left", "room": name}))

    async def _typing(self, frame: protocol.Typing) -> None:
        if frame.room not in self.rooms:
            raise BadRequest(f"join {frame.room!r} before typing in it")
        room = self.rooms[frame.room][0]
        await self.gw.publish_signal(room, "typing", {"user": self.user})


async def history_page(
    bus: Any, room: Room, *, before: int | None, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` stored messages before seq ``before`` (or the latest), or after ``after``."""
    first, last = await bus.bounds(room)
    if after is not None:
        start, end = after + 1, last
        rows = await bus.read(room, start, end, limit=limit)
    else:
        end = last if before is None else min(before - 1, last)
        start = max(first, end - limit + 1)
        rows = await bus.read(room, start, end)
    return [protocol.message_fields(room.name, seq, data) for seq, data in rows]


async def endpoint(ws: WebSocket) -> None:
    gw: Gateway = ws.app.state.gateway
    address = ws.client.host if ws.client else "unknown"
    if not gw.limits.connections.acquire(address):
        limits.refuse("connections_per_ip", ip=address)
        await ws.accept()
        await ws.close(1013, "too many connections from your address")
        return
    try:
        await Connection(ws, gw).run()
    finally:
        gw.limits.connections.release(address)
