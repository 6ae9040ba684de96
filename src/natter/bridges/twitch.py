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
import signal
import ssl
import time
from typing import Any

import orjson

from natter import logs
from natter.bridges import irc
from natter.bridges._ircconn import IRCConnection
from natter.bridges._probe import ProbeServer
from natter.bridges._twitch_metrics import DUPLICATES, JOINED, LINES, MALFORMED, RECONNECTS
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
from natter.bridges._twitch_store import Pending, RoomWriter
from natter.config import Settings
from natter.errors import NatterError
from natter.rooms import Room

__all__ = ["TwitchBridge", "TwitchSettings", "parse_bridge_spec", "run"]


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
        self._m = {m: m.labels(**labels) for m in (LINES, MALFORMED, DUPLICATES, RECONNECTS)}
        self._joined_gauge = JOINED.labels(**labels)
        self.store = RoomWriter(
            self.room,
            settings,
            size=self.cfg.buffer_size,
            publish_timeout=self.cfg.publish_timeout,
            name=f"natter-twitch-{self.channel}",
            labels=labels,
            log=self.log,
        )
        self._seen = RecentIds(self.cfg.dedup_cache)
        self._stop = asyncio.Event()
        self._joined, self._joined_at = False, 0.0
        self._joined_event = asyncio.Event()
        self._handovers: set[asyncio.Task[None]] = set()
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
        return self._joined and self.store.connected

    @property
    def buffered(self) -> int:
        """Twitch messages waiting to be stored (not counting one being published)."""
        return self.store.buffered

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
        pub_task = asyncio.create_task(self.store.run(), name="twitch-publish")
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
        for handover in list(self._handovers):
            await _cancel(handover)
        if self.relay is not None:
            await self.relay.stop()
        lost = await self.store.flush(self.cfg.shutdown_grace)
        if lost:
            self.log.error("stopping with messages not stored", lost=lost)
        for task in tasks:
            await _cancel(task)
        await self.store.close()
        if self.probe is not None:
            await self.probe.close()
        self._joined_gauge.set(0)
        self.log.info("bridge stopped")

    # -- NATS ----------------------------------------------------------------

    async def _nats_loop(self) -> None:
        room_bus = await self.store.connect()
        if self.relay is not None:
            await self.relay.follow(room_bus)

    # -- IRC -----------------------------------------------------------------

    async def _irc_loop(self) -> None:
        attempt, first = 0, True
        while True:
            if not first:
                self._m[RECONNECTS].inc()
            first = False
            started, reason, joined_for = time.monotonic(), "connect failed", 0.0
            try:
                async with asyncio.timeout(self.cfg.connect_timeout):
                    conn = await self._open()
            except (OSError, TimeoutError) as exc:
                reason = f"connect failed: {exc!r}"
            else:
                handover = False
                try:
                    reason = await self._session(conn)
                except _Reconnect:
                    handover = True
                except OSError as exc:
                    reason = f"connection error: {exc!r}"
                finally:
                    joined_for = self._left()
                    if not handover:
                        await conn.close()
                if handover:
                    self._start_handover(conn)
                    attempt = 0
                    continue
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

    async def _open(self) -> IRCConnection:
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.cfg.ca_file)
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=context, server_hostname=self.host if self.tls else None
        )
        return IRCConnection(reader, writer, lambda raw: self._malformed(raw, "line too long"))

    def _left(self) -> float:
        """Mark the channel as left; how long we had been in it."""
        joined_for = time.monotonic() - self._joined_at if self._joined else 0.0
        self._joined = False
        self._joined_event.clear()
        self._joined_gauge.set(0)
        return joined_for

    async def _session(self, conn: IRCConnection) -> str:
        """Log in, join and read until the connection ends; the reason it ended."""
        conn.send("CAP", "REQ", CAPABILITIES)
        conn.send("PASS", self.cfg.password())  # never logged
        conn.send("NICK", self.nick)
        await conn.drain()
        relay_task = None
        if self.relay is not None:
            relay_task = asyncio.create_task(self.relay.write(conn, lambda: self._joined))
        try:
            return await self._read(conn)
        finally:
            if relay_task is not None:
                await _cancel(relay_task)

    async def _read(self, conn: IRCConnection, *, handover: bool = False) -> str:
        """Handle lines until the connection ends (the reason) or Twitch asks to reconnect."""
        awaiting_pong = False
        while True:
            try:
                lines = await conn.read_lines(
                    self.cfg.pong_timeout if awaiting_pong else self.cfg.idle_timeout
                )
            except TimeoutError:
                if awaiting_pong:
                    return "no answer to our PING"
                conn.send("PING", "tmi.twitch.tv")
                awaiting_pong = True
                continue
            except EOFError:
                return "closed by server"
            awaiting_pong = False
            reconnect = False
            for raw in lines:
                reconnect = await self._on_line(raw, conn, handover) or reconnect
            await conn.drain()
            if reconnect and not handover:
                raise _Reconnect

    def _start_handover(self, conn: IRCConnection) -> None:
        task = asyncio.create_task(self._handover(conn), name="twitch-handover")
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def _handover(self, conn: IRCConnection) -> None:
        """After RECONNECT: keep reading the old connection until the new one has been in
        the channel for ``reconnect_overlap`` seconds, so nothing sent meanwhile is missed
        (a message seen on both is stored once)."""
        self.log.info("twitch asked to reconnect; old connection kept until the new one joins")

        async def overlap() -> None:
            await self._joined_event.wait()
            await asyncio.sleep(self.cfg.reconnect_overlap)

        old = asyncio.create_task(self._read(conn, handover=True))
        waiter = asyncio.create_task(overlap())
        try:
            await asyncio.wait(
                [old, waiter], timeout=self.cfg.handover_max, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await _cancel(waiter)
            await _cancel(old)
            await conn.close()
            self.log.info("old connection closed")

    def _malformed(self, raw: bytes, error: str) -> None:
        self._m[MALFORMED].inc()
        self.log.warning(
            "malformed line skipped", error=error, line=raw[:200].decode("utf-8", "replace")
        )

    async def _on_line(self, raw: bytes, conn: IRCConnection, handover: bool) -> bool:
        """Handle one line; True when it is Twitch's RECONNECT."""
        if not raw.strip():
            return False  # blank keepalive lines are not worth a warning
        self._m[LINES].inc()
        try:
            msg = irc.parse(raw)
        except irc.IRCParseError as exc:
            self._malformed(raw, str(exc))
            return False
        command = msg.command
        if command == "PRIVMSG":
            await self._on_privmsg(msg, raw)
        elif command == "PING":
            conn.send("PONG", msg.trailing or "tmi.twitch.tv")
        elif command == "RECONNECT":
            return True
        elif handover:
            self.log.debug("line on the old connection", command=command)
        elif command == "001":
            self.log.info("logged in", nick=self.nick)
            conn.send("JOIN", f"#{self.channel}")
        elif command == "JOIN" and self._is_me(msg) and msg.param(0).lower() == f"#{self.channel}":
            self._joined, self._joined_at = True, time.monotonic()
            self._joined_event.set()
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
        return False

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
        await self.store.put(Pending(line.msg_id, orjson.dumps(line.doc)))


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
    try:
        bridge = TwitchBridge(channel, room, settings=settings, server=server, tls=tls)
    except (ValueError, NatterError) as exc:  # bad names or NATTER_TWITCH_* settings
        raise SystemExit(f"natter bridge twitch: {exc}") from exc
    asyncio.run(serve(bridge))
