"""``natter chat``: the terminal client, over the gateway's WebSocket protocol.

It says ``hello``, joins one room, prints history and live messages as
``[HH:MM:SS] user: text`` and sends each input line (``quit`` leaves). When the
connection drops it reconnects with exponential backoff and full jitter,
resumes with ``join {since: last seq printed}`` and resends every unacked line
with its original id, so nothing is printed twice, skipped, or stored twice.

The core (:class:`ChatClient`) takes an async line source and an async printer,
so tests drive it without a terminal; :func:`run` wires it to stdin and stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

ReadLine = Callable[[], Awaitable[str | None]]
"""Returns the next input line, or None at end of input."""
Emit = Callable[[str], Awaitable[None]]
"""Shows one line of output."""

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
QUIT_WORDS = frozenset({"quit", "/quit", "/exit"})
PERMANENT_SEND_ERRORS = frozenset({"too_large", "bad_request", "forbidden", "unknown_room"})
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class Fatal(Exception):
    """The gateway refused something retrying cannot fix (hello, the room)."""


class _Retry(Exception):
    """The gateway cannot serve now (unavailable, rate limited): reconnect later."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""

    base: float = 0.25
    cap: float = 10.0
    attempt: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(0.05, max(ceiling, 0.05))

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class _Pending:
    id: str
    text: str
    retry: asyncio.TimerHandle | None = field(default=None, repr=False)


def ws_url(url: str) -> str:
    """Accept ws(s):// or http(s):// and a bare host; default the path to /ws."""
    if "://" not in url:
        url = f"ws://{url}"
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def format_message(frame: dict[str, Any]) -> str:
    """``[HH:MM:SS] user: text`` in local time; bridged messages name their source."""
    ts = frame.get("ts")
    try:
        when = datetime.fromisoformat(str(ts)).astimezone()
    except ValueError:
        when = datetime.now()
    user = str(frame.get("user", "?"))
    if frame.get("source"):
        user = f"{user} [{frame['source']}]"
    return f"[{when:%H:%M:%S}] {user}: {frame.get('text', '')}"


def new_id() -> str:
    return secrets.token_hex(16)


class ChatClient:
    """One user in one room, across as many connections as it takes."""

    def __init__(
        self,
        url: str,
        room: str,
        user: str,
        emit: Emit,
        *,
        notice: Emit | None = None,
        since: int | None = None,
        connect_timeout: float = 10.0,
        drain_timeout: float = 15.0,
        ack_timeout: float = 15.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = ws_url(url)
        self.room = room
        self.user = user
        self.emit = emit  # chat lines
        self.notice = notice or emit  # lines about the client itself, prefixed "* "
        self.last_seq = since  # highest seq printed: the next join's `since`
        self.node: Any = None  # the gateway worker of the current connection
        self.connections = 0
        self.connect_timeout = connect_timeout
        self.drain_timeout = drain_timeout
        self.ack_timeout = ack_timeout
        self.backoff = backoff or Backoff()
        self.pending: dict[str, _Pending] = {}
        self._ws: ClientConnection | None = None
        self._ready = False  # `joined` seen on the current connection
        self._drained = asyncio.Event()
        self._drained.set()
        self._connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ public

    async def run(self, read_line: ReadLine) -> int:
        """Chat until ``quit`` or end of input (then wait for acks), or a fatal error."""
        conn = asyncio.create_task(self._connection_loop(), name="natter-chat-connection")
        typing = asyncio.create_task(self._input(read_line), name="natter-chat-input")
        try:
            done, _ = await asyncio.wait({conn, typing}, return_when=asyncio.FIRST_COMPLETED)
            if conn in done:
                return conn.result()
            typing.result()
            return await self._drain(conn)
        finally:
            for task in (typing, conn):
                task.cancel()
            for task in (typing, conn):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def wait_connected(self) -> None:
        """Until the client has joined the room on some connection."""
        await self._connected.wait()

    # ------------------------------------------------------------------ input

    async def _input(self, read_line: ReadLine) -> None:
        while True:
            line = await read_line()
            if line is None:
                return
            text = line.rstrip("\r\n")
            if text.strip().lower() in QUIT_WORDS:
                return
            if text.strip():
                await self.send(text)

    async def send(self, text: str) -> str:
        """Queue one message; it is (re)sent until acked. Returns its client id."""
        p = _Pending(new_id(), text)
        self.pending[p.id] = p
        self._drained.clear()
        await self._transmit(p)
        return p.id

    async def _transmit(self, p: _Pending) -> None:
        ws = self._ws
        if ws is None or not self._ready or p.id not in self.pending:
            return  # resent after the next `joined`
        frame = {"type": "send", "room": self.room, "id": p.id, "text": p.text}
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(frame))
        # Backstop if neither ack nor error comes back on a live connection.
        self._schedule_retry(p, self.ack_timeout)

    def _schedule_retry(self, p: _Pending, delay: float) -> None:
        if p.retry is not None:
            p.retry.cancel()
        p.retry = asyncio.get_running_loop().call_later(delay, self._spawn_transmit, p)

    def _spawn_transmit(self, p: _Pending) -> None:
        task = asyncio.create_task(self._transmit(p))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle(self, msg_id: str) -> _Pending | None:
        p = self.pending.pop(msg_id, None)
        if p is not None and p.retry is not None:
            p.retry.cancel()
        if not self.pending:
            self._drained.set()
        return p

    async def _drain(self, conn: asyncio.Task[int]) -> int:
        """After quit or end of input: wait (bounded) until every line is acked."""
        if not self.pending:
            return EXIT_OK
        drained = asyncio.create_task(self._drained.wait())
        try:
            await asyncio.wait(
                {drained, conn}, timeout=self.drain_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            drained.cancel()
        if conn.done() and not conn.cancelled():
            return conn.result()
        if self.pending:
            await self.notice(f"* {len(self.pending)} message(s) were not acknowledged")
            return EXIT_FAILED
        return EXIT_OK

    # ------------------------------------------------------------------ connection

    async def _connection_loop(self) -> int:
        while True:
            try:
                await self._session()
                reason = "connection closed"
            except Fatal as exc:
                await self.notice(f"* {exc}")
                return EXIT_FAILED
            except InvalidURI as exc:
                await self.notice(f"* bad URL: {exc}")
                return EXIT_FAILED
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, _Retry) as exc:
                reason = str(exc) or type(exc).__name__
            delay = self.backoff.next()
            await self.notice(f"* disconnected ({reason}); reconnecting in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        ws = await asyncio.wait_for(connect(self.url, max_size=2**24), self.connect_timeout)
        try:
            backlog = await asyncio.wait_for(self._handshake(ws), self.connect_timeout)
            self.connections += 1
            verb = "connected to" if self.connections == 1 else "reconnected to"
            await self.notice(f"* {verb} #{self.room} as {self.user} (node {self.node})")
            self._ws = ws
            self._ready = True
            self.backoff.reset()
            self._connected.set()
            for frame in backlog:
                await self._on_frame(frame)
            for p in list(self.pending.values()):
                await self._transmit(p)
            async for raw in ws:
                for frame in _frames(raw):
                    await self._on_frame(frame)
        finally:
            self._ready = False
            self._ws = None
            await ws.close()

    async def _handshake(self, ws: ClientConnection) -> list[dict[str, Any]]:
        """hello, then join (resuming after last_seq); returns frames that followed `joined`."""
        await ws.send(json.dumps({"type": "hello", "user": self.user}))
        welcome, _ = await self._expect(ws, "welcome")
        self.node = welcome.get("node")
        self.user = str(welcome.get("user", self.user))
        join: dict[str, Any] = {"type": "join", "room": self.room}
        if self.last_seq is not None:
            join["since"] = self.last_seq
        await ws.send(json.dumps(join))
        _, backlog = await self._expect(ws, "joined")
        return backlog

    async def _expect(
        self, ws: ClientConnection, kind: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read until a frame of ``kind``; return it and the frames batched after it."""
        while True:
            frames = _frames(await ws.recv())
            for i, frame in enumerate(frames):
                if frame.get("type") == kind:
                    return frame, frames[i + 1 :]
                if frame.get("type") == "error" and not self._is_send_error(frame):
                    code = frame.get("code")
                    if code in ("unavailable", "rate_limited"):
                        raise _Retry(f"{code}: {frame.get('message')}")
                    raise Fatal(f"{code}: {frame.get('message')}")
                await self._on_frame(frame)

    def _is_send_error(self, frame: dict[str, Any]) -> bool:
        return frame.get("ref") in self.pending

    async def _on_raw(self, raw: str | bytes) -> None:
        for frame in _frames(raw):
            await self._on_frame(frame)

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message" and frame.get("room") == self.room:
            await self._on_message(frame)
        elif kind == "ack" and isinstance(frame.get("id"), str):
            self._settle(frame["id"])
        elif kind == "error":
            await self._on_error(frame)

    async def _on_message(self, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if not isinstance(seq, int):
            return
        if self.last_seq is not None and seq <= self.last_seq:
            return  # replayed after a reconnect: already printed
        self.last_seq = seq
        if isinstance(frame.get("id"), str):
            self._settle(frame["id"])  # our own line, stored
        await self.emit(format_message(frame))

    async def _on_error(self, frame: dict[str, Any]) -> None:
        code = str(frame.get("code", "error"))
        message = str(frame.get("message", ""))
        ref = frame.get("ref")
        p = self.pending.get(ref) if isinstance(ref, str) else None
        if p is None:
            if code == "unknown_room":
                raise Fatal(f"{code}: {message}")
            await self.notice(f"* error {code}: {message}")
        elif code in PERMANENT_SEND_ERRORS:
            self._settle(p.id)
            await self.notice(f"* not sent ({code}: {message}): {p.text}")
        else:  # rate_limited, unavailable: the same id again, later
            wait = frame.get("retry_after")
            delay = float(wait) if isinstance(wait, int | float) else 1.0
            self._schedule_retry(p, delay + random.uniform(0, 0.5))


def _frames(raw: str | bytes) -> list[dict[str, Any]]:
    """A server message is one frame or a JSON array of frames."""
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    return [f for f in items if isinstance(f, dict)]


async def chat(
    url: str,
    room: str,
    user: str,
    since: int | None,
    read_line: ReadLine,
    emit: Emit,
    notice: Emit | None = None,
) -> int:
    """The core loop: returns the exit code."""
    return await ChatClient(url, room, user, emit, notice=notice, since=since).run(read_line)


def _stdin_reader() -> ReadLine:
    """Lines from stdin via a daemon thread (works for terminals, pipes and files)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="natter-chat-stdin", daemon=True).start()
    return queue.get


async def _print(line: str) -> None:
    print(line, flush=True)


async def _print_notice(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(url: str, room: str, user: str, since: int | None) -> int:
    """``natter chat``: chat on stdin/stdout; returns the process exit code."""

    async def main() -> int:
        return await chat(url, room, user, since, _stdin_reader(), _print, _print_notice)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
