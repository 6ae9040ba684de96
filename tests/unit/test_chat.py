"""natter.chat's core loop against a scripted WebSocket server (no NATS, no gateway).

The server side is played by the test, one connection at a time, so it can
batch, repeat, drop the connection before an ack, and check what the client
sends back: a resume with ``since`` and the unacked line with its original id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from natter.chat import Backoff, ChatClient, format_message, ws_url

Frame = dict[str, Any]
TIMEOUT = 10.0


class Conn:
    """The server's end of one client connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.done = asyncio.Event()

    async def recv(self) -> Frame:
        frame: Frame = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        return frame

    async def send(self, *frames: Frame, batch: bool = False) -> None:
        if batch:
            await self.ws.send(json.dumps(list(frames)))
        else:
            for f in frames:
                await self.ws.send(json.dumps(f))

    async def handshake(self, node: int = 1) -> Frame:
        """Answer hello; return the join frame."""
        hello = await self.recv()
        assert hello["type"] == "hello"
        await self.send({"type": "welcome", "user": hello["user"], "node": node})
        join = await self.recv()
        assert join["type"] == "join"
        return join

    async def close(self) -> None:
        await self.ws.close()
        self.done.set()


class Scripted:
    def __init__(self) -> None:
        self.conns: asyncio.Queue[Conn] = asyncio.Queue()
        self.every: list[Conn] = []
        self.tasks: list[asyncio.Task[int]] = []
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        self.every.append(conn)
        await self.conns.put(conn)
        with contextlib.suppress(ConnectionClosed):
            await ws.wait_closed()
        await conn.done.wait()

    async def next(self) -> Conn:
        return await asyncio.wait_for(self.conns.get(), TIMEOUT)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted()
    async with serve(s.handler, "127.0.0.1", 0) as server:
        s.server = server
        yield s
        for task in s.tasks:
            task.cancel()
        for conn in s.every:
            conn.done.set()


def msg(seq: int, user: str = "bob", text: str | None = None, **extra: Any) -> Frame:
    return {
        "type": "message", "room": "general", "seq": seq, "id": f"id-{seq}", "user": user,
        "text": text if text is not None else f"m{seq}", "ts": "2025-01-01T12:00:00Z", **extra,
    }  # fmt: skip


class Run:
    def __init__(self, scripted: Scripted, **kwargs: Any) -> None:
        self.out: list[str] = []
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self.client = ChatClient(
            scripted.url, "general", "alice", self._emit, backoff=Backoff(0.01, 0.05), **kwargs
        )
        self.task = asyncio.create_task(self.client.run(self.lines.get))
        scripted.tasks.append(self.task)

    async def _emit(self, line: str) -> None:
        self.out.append(line)

    def texts(self) -> list[str]:
        return [line.split(": ", 1)[1] for line in self.out if line.startswith("[")]

    async def until(self, probe: Callable[[], bool], what: str) -> None:
        """Poll until ``probe`` holds, failing after TIMEOUT with ``what``."""
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not probe():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)

    async def finish(self) -> int:
        return await asyncio.wait_for(self.task, TIMEOUT)


async def test_resume_with_since_resends_unacked_with_same_id_and_prints_once(
    scripted: Scripted,
) -> None:
    run = Run(scripted)
    c1 = await scripted.next()
    assert await c1.handshake() == {"type": "join", "room": "general"}
    await c1.send({"type": "joined", "room": "general", "last_seq": 2}, msg(1), msg(2), batch=True)
    run.lines.put_nowait("hi there")
    sent = await c1.recv()
    assert sent["type"] == "send" and sent["text"] == "hi there" and sent["room"] == "general"
    await c1.send(msg(3), msg(3))
    await run.until(lambda: "m3" in run.texts(), "m3")
    await c1.close()  # before the ack

    c2 = await scripted.next()
    assert await c2.handshake(node=2) == {"type": "join", "room": "general", "since": 3}
    await c2.send({"type": "joined", "room": "general", "last_seq": 3})
    assert await c2.recv() == sent  # same id, same text
    await c2.send(
        {"type": "ack", "id": sent["id"], "room": "general", "seq": 4},
        msg(4, user="alice", text="hi there", id=sent["id"]),
        batch=True,
    )
    await run.until(lambda: not run.client.pending and "hi there" in run.texts(), "ack")
    assert run.client.node == 2 and run.client.connections == 2
    run.lines.put_nowait("quit")
    assert await run.finish() == 0
    assert run.texts() == ["m1", "m2", "m3", "hi there"]  # the repeated m3 printed once
    assert any(line.startswith("* reconnected to #general") for line in run.out)
    await c2.close()


async def test_end_of_input_waits_for_acks(scripted: Scripted) -> None:
    run = Run(scripted, drain_timeout=0.5)
    c = await scripted.next()
    await c.handshake()
    await c.send({"type": "joined", "room": "general", "last_seq": 0})
    run.lines.put_nowait("one")
    run.lines.put_nowait(None)
    first = await c.recv()
    assert not run.task.done()  # still waiting for the ack
    await c.send({"type": "ack", "id": first["id"], "room": "general", "seq": 1})
    assert await run.finish() == 0
    await c.close()

    never_acked = Run(scripted, drain_timeout=0.2)
    c = await scripted.next()
    await c.handshake()
    await c.send({"type": "joined", "room": "general", "last_seq": 1})
    never_acked.lines.put_nowait("lost")
    never_acked.lines.put_nowait(None)
    assert await never_acked.finish() == 1
    assert "* 1 message(s) were not acknowledged" in never_acked.out
    await c.close()


async def test_send_errors_and_refusals(scripted: Scripted) -> None:
    run = Run(scripted)
    c = await scripted.next()
    await c.handshake()
    await c.send({"type": "joined", "room": "general", "last_seq": 0})
    run.lines.put_nowait("x" * 5000)
    big = await c.recv()
    await c.send({"type": "error", "code": "too_large", "message": "over 4096", "ref": big["id"]})
    run.lines.put_nowait("retry me")
    busy = await c.recv()
    await c.send({"type": "error", "code": "unavailable", "message": "busy", "ref": busy["id"]})
    assert await c.recv() == busy  # retried later with the same id
    await c.send({"type": "ack", "id": busy["id"], "room": "general", "seq": 1})
    await run.until(lambda: not run.client.pending, "all settled")
    assert any(line.startswith("* not sent (too_large: over 4096)") for line in run.out)
    run.lines.put_nowait("/quit")
    assert await run.finish() == 0
    await c.close()

    refused = Run(scripted)
    c = await scripted.next()
    await c.recv()
    await c.send({"type": "error", "code": "forbidden", "message": "bad name"})
    assert await refused.finish() == 1
    assert refused.out == ["* forbidden: bad name"]
    await c.close()


def test_format_message_is_local_time_and_marks_bridges() -> None:
    ts = "2025-01-01T12:34:56.789Z"
    local = datetime(2025, 1, 1, 12, 34, 56, tzinfo=UTC).astimezone()
    assert format_message(msg(1, user="ann", text="hi", ts=ts)) == f"[{local:%H:%M:%S}] ann: hi"
    bridged = format_message(msg(2, user="viewer", text="gg", ts=ts, source="twitch"))
    assert bridged == f"[{local:%H:%M:%S}] viewer [twitch]: gg"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ws://127.0.0.1:8080/ws", "ws://127.0.0.1:8080/ws"),
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws"),
        ("https://chat.example/", "wss://chat.example/ws"),
        ("localhost:9000", "ws://localhost:9000/ws"),
    ],
)
def test_ws_url(given: str, expected: str) -> None:
    assert ws_url(given) == expected
