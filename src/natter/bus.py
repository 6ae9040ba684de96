"""The one adapter between natter and NATS/JetStream.

* :func:`connect` opens a client whose every callback is logged and counted.
* :class:`RoomAdmin` manages streams and the ``natter-rooms`` registry (what the
  reconciler uses).
* :class:`RoomBus` publishes, reads ranges and follows room streams (what the
  gateway and bridges use).

Every NATS failure that a caller may retry surfaces as
:class:`natter.errors.Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from natter import logs
from natter.config import Settings
from natter.errors import TooLarge, Unavailable, UnknownRoom
from natter.rooms import REGISTRY_BUCKET, Room

log = logs.get("natter.bus")

#: Seconds a registry write keeps retrying while a new bucket elects its leader.
REGISTRY_SETTLE_SECONDS = 10.0

#: Messages a range read buffers ahead of its reader.
READ_BUFFER = 32768

#: Errors that mean "NATS or JetStream cannot answer now; try again".
TRANSIENT: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    nats.js.errors.NoStreamResponseError,
    ConnectionError,
    OSError,
)

#: Everything a connect attempt may raise that means "not now".
CONNECT_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT, nats.errors.Error)

READY_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT, nats.js.errors.APIError)

EventHook = Callable[[str], None]
MessageHandler = Callable[[int, bytes], Awaitable[None]]


async def connect(
    settings: Settings,
    name: str,
    *,
    on_event: EventHook | None = None,
    connect_attempts: int = 1,
) -> NATS:
    """Connect to the cluster in ``settings.nats_url``; reconnect forever afterwards.

    ``on_event`` is called with ``disconnected``, ``reconnected``, ``error``,
    ``lame_duck`` or ``closed`` so the caller can count them.
    """

    def emit(event: str) -> None:
        if on_event is not None:
            on_event(event)

    async def disconnected() -> None:
        log.warning("nats disconnected")
        emit("disconnected")

    async def reconnected() -> None:
        log.info(
            "nats reconnected", server=str(nc.connected_url.netloc if nc.connected_url else "")
        )
        emit("reconnected")

    async def error(exc: Exception) -> None:
        log.warning("nats error", error=repr(exc))
        emit("error")

    async def closed() -> None:
        log.info("nats connection closed")
        emit("closed")

    async def lame_duck() -> None:
        log.info("nats server entering lame duck mode; will move to another")
        emit("lame_duck")

    nc = NATS()
    options: dict[str, Any] = {
        "servers": settings.nats_servers(),
        "name": name,
        "connect_timeout": settings.nats_connect_timeout,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "allow_reconnect": True,
        "ping_interval": 5,
        "max_outstanding_pings": 2,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        "closed_cb": closed,
        "lame_duck_mode_cb": lame_duck,
        "inbox_prefix": settings.inbox_prefix(),
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_tls_ca or settings.nats_tls_cert:
        options["tls"] = tls_context(settings)
    # nats-py keeps retrying a refused login forever; bound one attempt.
    attempt_timeout = max(5.0, 2 * settings.nats_connect_timeout * len(options["servers"]))
    for attempt in range(connect_attempts):
        try:
            await asyncio.wait_for(nc.connect(**options), attempt_timeout)
            log.info(
                "nats connected", server=str(nc.connected_url.netloc if nc.connected_url else "")
            )
            return nc
        except CONNECT_ERRORS as exc:
            if attempt + 1 >= connect_attempts:
                raise Unavailable(
                    f"cannot connect to NATS at {settings.nats_url}: {exc!r}"
                ) from exc
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Client TLS for NATS: verify servers against ``nats_tls_ca``; present a cert if given."""
    context = ssl.create_default_context(cafile=settings.nats_tls_ca)
    if settings.nats_tls_cert:
        context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
    return context


async def jetstream_ready(nc: NATS, timeout: float = 1.0) -> bool:
    """True when the client is connected and JetStream answers an account-info request."""
    if not nc.is_connected:
        return False
    try:
        await nc.jetstream(timeout=timeout).account_info()
    except READY_ERRORS:
        return False
    return True


class RoomAdmin:
    """Streams and the room registry: what the reconciler needs, and nothing else."""

    def __init__(self, nc: NATS, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._jsm = self._js._jsm
        self._kv: Any = None
        self._kv_lock = asyncio.Lock()

    async def stream_info(self, name: str) -> api.StreamInfo | None:
        try:
            return await self._jsm.stream_info(name)
        except nats.js.errors.NotFoundError:
            return None
        except TRANSIENT as exc:
            raise Unavailable(f"JetStream did not answer for stream {name}: {exc!r}") from exc

    async def add_stream(self, config: api.StreamConfig) -> api.StreamInfo:
        return await self._call(self._jsm.add_stream(config), config.name)

    async def update_stream(self, config: api.StreamConfig) -> api.StreamInfo:
        return await self._call(self._jsm.update_stream(config), config.name)

    async def delete_stream(self, name: str) -> bool:
        try:
            return bool(await self._jsm.delete_stream(name))
        except nats.js.errors.NotFoundError:
            return False
        except TRANSIENT as exc:
            raise Unavailable(f"JetStream did not answer deleting {name}: {exc!r}") from exc

    async def _call(self, call: Awaitable[api.StreamInfo], name: str | None) -> api.StreamInfo:
        try:
            return await call
        except TRANSIENT as exc:
            raise Unavailable(f"JetStream did not answer for stream {name}: {exc!r}") from exc

    async def registry(self, replicas: int = 3) -> Any:
        """The ``natter-rooms`` KV bucket, created on first use."""
        async with self._kv_lock:
            return await self._open_registry(replicas)

    async def _open_registry(self, replicas: int) -> Any:
        if self._kv is not None:
            return self._kv
        try:
            try:
                self._kv = await self._js.key_value(REGISTRY_BUCKET)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self._create_registry(replicas)
        except TRANSIENT as exc:
            raise Unavailable(f"JetStream did not answer for the room registry: {exc!r}") from exc
        return self._kv

    async def _create_registry(self, replicas: int) -> Any:
        try:
            return await self._js.create_key_value(
                bucket=REGISTRY_BUCKET,
                history=1,
                replicas=replicas,
                description="natter room registry: <namespace>.<room> -> spec and stream",
            )
        except nats.js.errors.ServerError as exc:
            if exc.err_code != 10074 or replicas == 1:  # replicas > 1 on a standalone server
                raise
            return await self._create_registry(1)

    async def put_entry(self, room: Room) -> bool:
        """Write the room's registry entry; True when it changed."""
        kv = await self.registry()
        value = orjson.dumps(room.registry_value(), option=orjson.OPT_SORT_KEYS)
        # A bucket created a moment ago may not have elected its leader yet.
        deadline = time.monotonic() + REGISTRY_SETTLE_SECONDS
        while True:
            try:
                try:
                    current = await kv.get(room.key)
                    if current.value == value:
                        return False
                except nats.js.errors.KeyNotFoundError:
                    pass
                await kv.put(room.key, value)
                return True
            except TRANSIENT as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"cannot write registry entry {room.key}: {exc!r}") from exc
                await asyncio.sleep(0.2)

    async def delete_entry(self, namespace: str, name: str) -> None:
        kv = await self.registry()
        try:
            await kv.delete(f"{namespace}.{name}")
        except nats.js.errors.KeyNotFoundError:
            pass
        except TRANSIENT as exc:
            raise Unavailable(f"cannot delete registry entry {namespace}.{name}: {exc!r}") from exc


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a JetStream-delivered message.

    Read straight from the ack subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...``,
    or the 11/12-token form with domain and account hash) instead of building the whole
    ``msg.metadata`` object (with its datetime) for every message replayed or followed.
    """
    tokens = msg.reply.split(".") if msg.reply else []
    if tokens[:2] == ["$JS", "ACK"]:
        if len(tokens) == 9:
            return int(tokens[5])
        if len(tokens) >= 11:
            return int(tokens[7])
    return int(msg.metadata.sequence.stream)


@dataclass(frozen=True, slots=True)
class PubResult:
    seq: int
    duplicate: bool


class RoomBus:
    """Publishing, reading and following room streams."""

    def __init__(self, nc: NATS, *, timeout: float = 5.0) -> None:
        self.nc = nc
        self._js = nc.jetstream(timeout=timeout)

    async def publish(
        self, room: Room, payload: bytes, *, msg_id: str, timeout: float = 10.0
    ) -> PubResult:
        """Store ``payload`` in the room's stream, deduplicated by ``msg_id``.

        Retries with the same id through elections and reconnects until ``timeout``;
        a retried id answers the original sequence.
        """
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            try:
                return await self._store(room, payload, msg_id, max(0.2, min(2.0, remaining)))
            except nats.js.errors.APIError as exc:
                if exc.err_code == 10054 or exc.code == 413:  # maximum message size exceeded
                    raise TooLarge(f"message exceeds the room's limit: {exc.description}") from exc
                if exc.err_code in (10060, 10059):  # expected stream does not match / not found
                    raise UnknownRoom(f"room {room.name} has no stream") from exc
                if not isinstance(
                    exc, nats.js.errors.ServiceUnavailableError | nats.js.errors.ServerError
                ):
                    raise Unavailable(f"JetStream refused the publish: {exc.description}") from exc
                error: BaseException = exc
            except nats.errors.MaxPayloadError as exc:
                raise TooLarge("message exceeds the NATS maximum payload") from exc
            except TRANSIENT as exc:
                error = exc
            if time.monotonic() + delay >= deadline:
                raise Unavailable(f"JetStream did not acknowledge within {timeout:.0f}s: {error!r}")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    async def _store(self, room: Room, payload: bytes, msg_id: str, timeout: float) -> PubResult:
        """One JetStream publish as a plain request, its ack parsed with orjson.

        The same wire exchange as ``js.publish(stream=...)``, without building a
        ``PubAck`` through the json module for every message (a third of the
        publish path's CPU); errors are raised as the same nats.js exceptions.
        """
        try:
            msg = await self.nc.request(
                room.subject,
                payload,
                timeout=timeout,
                headers={"Nats-Msg-Id": msg_id, "Nats-Expected-Stream": room.stream},
            )
        except nats.errors.NoRespondersError as exc:
            raise nats.js.errors.NoStreamResponseError from exc
        if not msg.data and msg.headers and msg.headers.get("Status"):
            nats.js.errors.APIError.from_msg(msg)
        ack = orjson.loads(msg.data)
        if "error" in ack:
            nats.js.errors.APIError.from_error(ack["error"])
        return PubResult(int(ack["seq"]), bool(ack.get("duplicate")))

    async def bounds(self, room: Room) -> tuple[int, int]:
        """``(first_seq, last_seq)`` of the room's stream (``(0, 0)`` when never written)."""
        try:
            info = await self._js._jsm.stream_info(room.stream)
        except nats.js.errors.NotFoundError as exc:
            raise UnknownRoom(f"room {room.name} has no stream") from exc
        except TRANSIENT as exc:
            raise Unavailable(f"JetStream did not answer for {room.stream}: {exc!r}") from exc
        state = info.state
        return (state.first_seq if state.messages else state.last_seq + 1), state.last_seq

    async def read(
        self, room: Room, start: int, end: int, *, limit: int | None = None, idle: float = 3.0
    ) -> list[tuple[int, bytes]]:
        """Stored messages with ``start <= seq <= end`` in seq order (at most ``limit``).

        Messages removed by retention are simply absent. Raises :class:`Unavailable`
        when the stream cannot be read within ``idle`` seconds of silence.
        """
        out: list[tuple[int, bytes]] = []
        async for seq, data in self.iter_range(room, start, end, idle=idle):
            out.append((seq, data))
            if limit is not None and len(out) >= limit:
                break
        return out

    async def iter_range(
        self, room: Room, start: int, end: int, *, idle: float = 3.0
    ) -> AsyncIterator[tuple[int, bytes]]:
        start = max(start, 1)
        if end < start:
            return
        first, last = await self.bounds(room)
        end = min(end, last)
        start = max(start, first)
        if end < start:
            return
        # A callback subscription feeding a local buffer: next_msg() costs a task and a
        # wait_for per message, which capped replay at a few thousand messages a second.
        buf: deque[tuple[int, bytes]] = deque()
        arrived = asyncio.Event()
        drained = asyncio.Event()

        async def on_msg(msg: Msg) -> None:
            buf.append((stream_seq(msg), msg.data))
            arrived.set()
            if len(buf) >= READ_BUFFER:  # backpressure: JetStream flow control stalls
                drained.clear()
                await drained.wait()

        try:
            sub = await self._js.subscribe(
                room.subject,
                stream=room.stream,
                cb=on_msg,
                ordered_consumer=True,
                idle_heartbeat=1.0,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=start,
                    inactive_threshold=30.0,
                ),
                pending_msgs_limit=65536,
            )
        except TRANSIENT as exc:
            raise Unavailable(f"cannot read {room.stream}: {exc!r}") from exc
        try:
            while True:
                if not buf:
                    drained.set()
                    arrived.clear()
                    try:
                        await asyncio.wait_for(arrived.wait(), idle)
                    except TimeoutError as exc:
                        _, now_last = await self.bounds(room)
                        if now_last < start:
                            return
                        raise Unavailable(f"reading {room.stream} stalled at seq {start}") from exc
                    continue
                seq, data = buf.popleft()
                if len(buf) < READ_BUFFER // 2:
                    drained.set()
                if seq > end:
                    return
                if seq >= start:
                    start = seq + 1
                    yield seq, data
                if seq >= end:
                    return
        finally:
            drained.set()
            with contextlib.suppress(*CONNECT_ERRORS):
                await sub.unsubscribe()

    async def follow(self, room: Room, start: int, handler: MessageHandler) -> Follower:
        """Deliver every message from seq ``start`` on to ``handler(seq, data)``, live.

        One ordered consumer; it recreates itself after failover. Callers must
        still check seqs for gaps (and fill them with :meth:`read`).
        """
        follower = Follower(self._js, room, handler)
        await follower.start(start)
        return follower


class Follower:
    """A live, ordered feed of one room's stream."""

    def __init__(self, js: Any, room: Room, handler: MessageHandler) -> None:
        self._js = js
        self._room = room
        self._handler = handler
        self._sub: Any = None

    async def start(self, start: int) -> None:
        async def on_msg(msg: Msg) -> None:
            await self._handler(stream_seq(msg), msg.data)

        try:
            self._sub = await self._js.subscribe(
                self._room.subject,
                stream=self._room.stream,
                cb=on_msg,
                ordered_consumer=True,
                idle_heartbeat=1.0,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=max(start, 1),
                    inactive_threshold=60.0,
                ),
                pending_msgs_limit=262144,
            )
        except nats.js.errors.NotFoundError as exc:
            raise UnknownRoom(f"room {self._room.name} has no stream") from exc
        except TRANSIENT as exc:
            raise Unavailable(f"cannot follow {self._room.stream}: {exc!r}") from exc

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(*CONNECT_ERRORS):
                await self._sub.unsubscribe()
            self._sub = None


class Registry:
    """Read side of the ``natter-rooms`` registry, for gateways and bridges."""

    def __init__(self, nc: NATS, *, timeout: float = 5.0) -> None:
        self._js = nc.jetstream(timeout=timeout)
        self._kv: Any = None

    async def _bucket(self) -> Any:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(REGISTRY_BUCKET)
            except nats.js.errors.BucketNotFoundError:
                return None
            except TRANSIENT as exc:
                raise Unavailable(f"room registry unavailable: {exc!r}") from exc
        return self._kv

    async def lookup(self, namespace: str, name: str) -> Room | None:
        kv = await self._bucket()
        if kv is None:
            return None
        try:
            entry = await kv.get(f"{namespace}.{name}")
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except nats.js.errors.InvalidKeyError:
            return None
        except TRANSIENT as exc:
            raise Unavailable(f"room registry unavailable: {exc!r}") from exc
        return Room.from_registry(orjson.loads(entry.value)) if entry.value else None

    async def all(self) -> dict[str, Room]:
        """Every registered room, keyed ``<namespace>.<room>``."""
        kv = await self._bucket()
        if kv is None:
            return {}
        rooms: dict[str, Room] = {}
        try:
            watcher = await kv.watchall(include_history=False)
            try:
                async for entry in watcher:
                    if entry is None:
                        break
                    if entry.value and entry.operation is None:
                        room = Room.from_registry(orjson.loads(entry.value))
                        rooms[room.key] = room
            finally:
                with contextlib.suppress(*CONNECT_ERRORS):
                    await watcher.stop()
        except TRANSIENT as exc:
            raise Unavailable(f"room registry unavailable: {exc!r}") from exc
        return rooms
