"""The Twitch bridge: Twitch chat (IRC) into one natter room, and optionally back.

One :class:`TwitchBridge` keeps three loops:

* **IRC** — connects to Twitch (TLS ``irc.chat.twitch.tv:6697`` by default),
  requests ``twitch.tv/tags twitch.tv/commands``, logs in (anonymous
  ``justinfan…`` or OAuth), JOINs the channel, answers PING, honours
  RECONNECT, and reconnects with exponential backoff and jitter after any drop.
  Each ``PRIVMSG`` becomes a stored message in a bounded buffer.
* **publish** — stores the buffer's head in the room's stream through
  :class:`natter.bus.RoomBus` with ``Nats-Msg-Id`` = Twitch's message id, and
  holds it (retrying) while NATS is unavailable. When the buffer is full the
  IRC loop stops reading, so nothing received is dropped; Twitch may then close
  the connection, and the bridge reconnects once there is room again.
* **relay** (off by default, needs a token) — follows the room and posts
  natter users' messages to the channel, rate limited.

``run()`` is the blocking process entry point (``natter bridge twitch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import time
from dataclasses import dataclass
from typing import Any

import orjson

from natter import bus, logs
from natter.bridges import irc
from natter.bridges._probe import ProbeServer
from natter.bridges._twitch_metrics import (
    BUFFERED,
    DUPLICATES,
    JOINED,
    LINES,
    MALFORMED,
    PUBLISHED,
    RECONNECTS,
    REJECTED,
)
from natter.bridges._twitch_proto import (
    CAPABILITIES,
    RecentIds,
    TwitchSettings,
    anonymous_nick,
    backoff_delay,
    chat_line,
    normalize_channel,
    parse_bridge_spec,
    parse_server,
)
from natter.bridges._twitch_relay import Relay
from natter.config import Settings
from natter.errors import TooLarge, Unavailable, UnknownRoom
from natter.rooms import Room

__all__ = ["TwitchBridge", "TwitchSettings", "parse_bridge_spec", "run"]

_READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class _Pending:
    msg_id: str
    payload: bytes


class _Reconnect(Exception):
    """Twitch asked us to reconnect (RECONNECT)."""


class TwitchBridge:
    """Bridge one Twitch channel into one natter room until :meth:`stop`."""

    def __init__(
        self,
        channel: str,
        room: str,
        *,
        settings: Settings,
        twitch: TwitchSettings | None = None,
        server: str | None = None,
        tls: bool | None = None,
    ) -> None:
        self.cfg = twitch or TwitchSettings()
        self.settings = settings
        self.channel = normalize_channel(channel)
        self.room = Room.build(settings.namespace, room, None)
        self.tls = self.cfg.tls if tls is None else tls
        self.host, self.port = parse_server(server or self.cfg.server, self.tls)
        self.nick = self.cfg.username or anonymous_nick()
        self.log = logs.get("natter.bridges.twitch", channel=self.channel, room=self.room.name)
        labels = {"channel": self.channel, "room": self.room.name}
        self._m = {
            m: m.labels(**labels)
            for m in (LINES, MALFORMED, PUBLISHED, DUPLICATES, REJECTED, RECONNECTS)
        }
        self._buffered = BUFFERED.labels(**labels)
        self._joined_gauge = JOINED.labels(**labels)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=self.cfg.buffer_size)
        self._seen = RecentIds(self.cfg.dedup_cache)
        self._stop = asyncio.Event()
        self._bus_ready = asyncio.Event()
        self._nc: Any = None
        self._bus: bus.RoomBus | None = None
        self._joined, self._joined_at = False, 0.0
        self._inflight = False
        self.relay = Relay(self.channel, self.room, self.cfg, self.log) if self.relaying else None
        self.probe: ProbeServer | None = None
        if self.cfg.relay and not self.cfg.authenticated:
            self.log.warning("relay needs NATTER_TWITCH_OAUTH_TOKEN and _USERNAME; relay is off")

    # -- state ---------------------------------------------------------------

    @property
    def joined(self) -> bool:
        return self._joined

    @property
    def ready(self) -> bool:
        """In the Twitch channel and connected to NATS."""
        return self._joined and self._nc is not None and bool(self._nc.is_connected)

    @property
    def buffered(self) -> int:
        return self._queue.qsize()

    @property
    def relaying(self) -> bool:
        return self.cfg.relay and self.cfg.authenticated

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler)."""
        self._stop.set()

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`, then store what is held (up to ``shutdown_grace``)."""
        if self.cfg.http_port:
            self.probe = ProbeServer(self.cfg.http_host, self.cfg.http_port, lambda: self.ready)
            await self.probe.start()
        self.log.info(
            "bridge starting",
            server=f"{self.host}:{self.port}",
            tls=self.tls,
            nick=self.nick,
            relay=self.relaying,
        )
        irc_task = asyncio.create_task(self._irc_loop(), name="twitch-irc")
        nats_task = asyncio.create_task(self._nats_loop(), name="twitch-nats")
        pub_task = asyncio.create_task(self._publish_loop(), name="twitch-publish")
        stop_task = asyncio.create_task(self._stop.wait())
        tasks = [irc_task, nats_task, pub_task]
        try:
            pending: set[asyncio.Task[Any]] = {stop_task, *tasks}
            # Only stop() ends this; the loops never return unless they fail.
            while stop_task in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop_task}:
                    if (exc := task.exception()) is not None:
                        raise exc
        finally:
            stop_task.cancel()
            await self._shutdown(irc_task, tasks)

    async def _shutdown(
        self, irc_task: asyncio.Task[None], tasks: list[asyncio.Task[None]]
    ) -> None:
        self.log.info("bridge stopping", buffered=self.buffered)
        await _cancel(irc_task)
        if self.relay is not None:
            await self.relay.stop()
        try:
            async with asyncio.timeout(self.cfg.shutdown_grace):
                await self._queue.join()
        except TimeoutError:
            self.log.error(
                "stopping with messages not stored", lost=self.buffered + int(self._inflight)
            )
        for task in tasks:
            await _cancel(task)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self._nc.drain()
        if self.probe is not None:
            await self.probe.close()
        self._joined_gauge.set(0)
        self.log.info("bridge stopped")

    # -- NATS ----------------------------------------------------------------

    async def _nats_loop(self) -> None:
        attempt = 0
        while self._nc is None:
            try:
                self._nc = await bus.connect(self.settings, name=f"natter-twitch-{self.channel}")
            except Unavailable as exc:
                attempt += 1
                delay = backoff_delay(attempt, 0.2, 5.0)
                self.log.warning(
                    "nats unavailable; retrying",
                    attempt=attempt,
                    error=str(exc),
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)
        self._bus = bus.RoomBus(self._nc)
        self._bus_ready.set()
        if self.relay is not None:
            await self.relay.follow(self._bus)

    async def _publish_loop(self) -> None:
        await self._bus_ready.wait()
        assert self._bus is not None
        while True:
            item = await self._queue.get()
            self._inflight = True
            try:
                await self._store(self._bus, item)
            finally:
                self._inflight = False
                self._queue.task_done()
                self._buffered.set(self._queue.qsize())

    async def _store(self, room_bus: bus.RoomBus, item: _Pending) -> None:
        """Store one message, holding it (never dropping it) while NATS cannot."""
        attempt, holding = 0, False
        while True:
            try:
                result = await room_bus.publish(
                    self.room, item.payload, msg_id=item.msg_id, timeout=self.cfg.publish_timeout
                )
            except TooLarge as exc:
                self._m[REJECTED].inc()
                self.log.error("room refused message", msg_id=item.msg_id, error=str(exc))
                return
            except (Unavailable, UnknownRoom) as exc:
                attempt += 1
                if not holding:
                    self.log.warning(
                        "cannot store; holding messages", error=str(exc), buffered=self.buffered + 1
                    )
                    holding = True
                await asyncio.sleep(backoff_delay(attempt, 0.1, 2.0))
                continue
            if holding:
                self.log.info("storing again", buffered=self.buffered)
            self._m[DUPLICATES if result.duplicate else PUBLISHED].inc()
            return

    # -- IRC -----------------------------------------------------------------

    async def _irc_loop(self) -> None:
        attempt, first = 0, True
        while True:
            if not first:
                self._m[RECONNECTS].inc()
            first = False
            started, reason = time.monotonic(), "connect failed"
            joined_for = 0.0
            try:
                async with asyncio.timeout(self.cfg.connect_timeout):
                    reader, writer = await self._open()
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                reason = f"connect failed: {exc!r}"
            else:
                try:
                    reason = await self._session(reader, writer)
                except _Reconnect:
                    self.log.info("twitch asked to reconnect")
                    await _close(writer)
                    attempt = 0
                    continue
                except OSError as exc:
                    reason = f"connection error: {exc!r}"
                finally:
                    joined_for = self._left()
                    await _close(writer)
            if joined_for >= self.cfg.stable_after:
                attempt = 0
            attempt += 1
            delay = backoff_delay(attempt, self.cfg.backoff_initial, self.cfg.backoff_max)
            self.log.warning(
                "twitch connection lost; reconnecting",
                reason=reason,
                attempt=attempt,
                retry_in=round(delay, 3),
                lasted=round(time.monotonic() - started, 3),
            )
            await asyncio.sleep(delay)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.cfg.ca_file)
        return await asyncio.open_connection(
            self.host, self.port, ssl=context, server_hostname=self.host if self.tls else None
        )

    def _left(self) -> float:
        """Mark the channel as left; how long we had been in it."""
        joined_for = time.monotonic() - self._joined_at if self._joined else 0.0
        self._joined = False
        self._joined_gauge.set(0)
        return joined_for

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Log in, join and read until the connection ends; the reason it ended."""
        writer.write(f"CAP REQ :{CAPABILITIES}\r\n".encode())
        writer.write(f"PASS {self.cfg.password()}\r\n".encode())  # never logged
        writer.write(f"NICK {self.nick}\r\n".encode())
        await writer.drain()
        relay_task = None
        if self.relay is not None:
            relay_task = asyncio.create_task(self.relay.write(writer, lambda: self._joined))
        buf, discarding, awaiting_pong = b"", False, False
        try:
            while True:
                timeout = self.cfg.pong_timeout if awaiting_pong else self.cfg.idle_timeout
                try:
                    async with asyncio.timeout(timeout):
                        chunk = await reader.read(_READ_CHUNK)
                except TimeoutError:
                    if awaiting_pong:
                        return "no answer to our PING"
                    self._send(writer, "PING", "tmi.twitch.tv")
                    awaiting_pong = True
                    continue
                if not chunk:
                    return "closed by server"
                awaiting_pong = False
                buf += chunk
                *lines, buf = buf.split(b"\n")
                if discarding and lines:
                    lines, discarding = lines[1:], False
                if len(buf) > irc.MAX_LINE_BYTES + 2:
                    self._malformed(buf[:200], "line too long")
                    buf, discarding = b"", True
                for raw in lines:
                    await self._on_line(raw, writer)
                await writer.drain()
        finally:
            if relay_task is not None:
                await _cancel(relay_task)

    def _send(self, writer: asyncio.StreamWriter, command: str, *params: str) -> None:
        writer.write(irc.format_line(command, *params).encode() + b"\r\n")

    def _malformed(self, raw: bytes, error: str) -> None:
        self._m[MALFORMED].inc()
        self.log.warning(
            "malformed line skipped", error=error, line=raw[:200].decode("utf-8", "replace")
        )

    async def _on_line(self, raw: bytes, writer: asyncio.StreamWriter) -> None:
        if not raw.strip():
            return  # blank keepalive lines are not worth a warning
        self._m[LINES].inc()
        try:
            msg = irc.parse(raw)
        except irc.IRCParseError as exc:
            self._malformed(raw, str(exc))
            return
        command = msg.command
        if command == "PRIVMSG":
            await self._on_privmsg(msg, raw)
        elif command == "PING":
            self._send(writer, "PONG", msg.trailing or "tmi.twitch.tv")
        elif command == "RECONNECT":
            raise _Reconnect
        elif command == "001":
            self.log.info("logged in", nick=self.nick)
            self._send(writer, "JOIN", f"#{self.channel}")
        elif command == "JOIN" and self._is_me(msg) and msg.param(0).lower() == f"#{self.channel}":
            self._joined, self._joined_at = True, time.monotonic()
            self._joined_gauge.set(1)
            if self.relay is not None:
                self.relay.wake()
            self.log.info("joined channel")
        elif command == "PART" and self._is_me(msg):
            self._left()
            self.log.warning("parted from channel")
        elif command == "CAP":
            if msg.param(1) == "NAK":
                self.log.error("twitch refused capabilities", caps=msg.trailing)
            else:
                self.log.debug("capabilities", reply=msg.param(1), caps=msg.trailing)
        elif command == "NOTICE":
            self.log.warning("twitch notice", text=msg.trailing, msg_id=msg.tags.get("msg-id"))
        else:
            self.log.debug("line", command=command)

    def _is_me(self, msg: irc.Message) -> bool:
        return msg.source is not None and msg.source.nick.lower() == self.nick

    async def _on_privmsg(self, msg: irc.Message, raw: bytes) -> None:
        if msg.param(0).lower() != f"#{self.channel}":
            self.log.debug("privmsg for another channel ignored", target=msg.param(0))
            return
        line = chat_line(msg, self.channel)
        if line is None:
            self._malformed(raw, "PRIVMSG without a sender or text")
            return
        if self.cfg.authenticated and line.login == self.nick:
            return  # our own relayed line, already in the room
        if self._seen.seen(line.msg_id):
            self._m[DUPLICATES].inc()
            return
        item = _Pending(line.msg_id, orjson.dumps(line.doc))
        if self._queue.full():
            self.log.warning("buffer full; pausing reads from twitch", size=self.cfg.buffer_size)
        await self._queue.put(item)
        self._buffered.set(self._queue.qsize())


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it; cancel again if a library swallowed the first one
    (``asyncio.wait_for`` on Python 3.11 can, and nats-py uses it)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        logs.get("natter.bridges.twitch").warning(
            "task failed", task=task.get_name(), error=repr(task.exception())
        )


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(2.0):
            await writer.wait_closed()


async def serve(bridge: TwitchBridge) -> None:
    """Run ``bridge`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bridge.stop)
    try:
        await bridge.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run(channel: str, room: str, server: str | None, tls: bool, settings: Settings) -> None:
    """Process entry point of ``natter bridge twitch``: blocks until SIGTERM/SIGINT."""
    logs.setup(settings.log_level, settings.log_format, process="twitch-bridge")
    bridge = TwitchBridge(channel, room, settings=settings, server=server, tls=tls)
    asyncio.run(serve(bridge))
