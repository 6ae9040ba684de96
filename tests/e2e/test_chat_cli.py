"""The terminal client (``natter chat``) against a running ``natter up``.

Most tests drive :class:`natter.chat.ChatClient` in-process through its line
source and printer; one runs the real ``natter chat`` command in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from natter.chat import Backoff, ChatClient

pytestmark = [pytest.mark.slow]

LINE_RE = re.compile(r"^\[\d\d:\d\d:\d\d\] (?P<user>[^:]+): (?P<text>.*)$")
TIMEOUT = 20.0


async def eventually(within: float, probe: Callable[[], Any], what: str) -> Any:
    """Poll ``probe`` until it returns something truthy, or fail saying ``what``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Driven:
    """A ChatClient run by a test: lines go in through ``type``, output lands in ``out``."""

    client: ChatClient
    lines: asyncio.Queue[str | None]
    out: list[str] = field(default_factory=list)
    task: asyncio.Task[int] | None = None

    def type(self, line: str) -> None:
        self.lines.put_nowait(line)

    def said(self) -> list[tuple[str, str]]:
        """(user, text) of each chat line printed so far."""
        return [(m["user"], m["text"]) for m in map(LINE_RE.match, self.out) if m]

    def texts_with(self, token: str) -> list[str]:
        return [text for _, text in self.said() if token in text]

    async def wait_text(self, text: str) -> None:
        await eventually(TIMEOUT, lambda: any(t == text for _, t in self.said()), repr(text))

    async def quit(self) -> int:
        self.type("quit")
        assert self.task is not None
        return await asyncio.wait_for(self.task, TIMEOUT)


@pytest.fixture
async def chatter(natter_module: Any) -> AsyncIterator[Callable[..., Any]]:
    started: list[Driven] = []

    async def start(room: str, user: str, since: int | None = None) -> Driven:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        out: list[str] = []

        async def emit(line: str) -> None:
            out.append(line)

        client = ChatClient(
            natter_module.ws_url, room, user, emit, since=since, backoff=Backoff(base=0.1, cap=1.0)
        )
        driven = Driven(client, lines, out)
        driven.task = asyncio.create_task(client.run(lines.get))
        started.append(driven)
        await asyncio.wait_for(client.wait_connected(), TIMEOUT)
        return driven

    yield start
    for d in started:
        assert d.task is not None
        d.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await d.task


def token() -> str:
    return uuid.uuid4().hex[:8]


async def post(natter_module: Any, room: str, text: str) -> int:
    """Store a message through the HTTP API; retried with the same id across a dying worker."""
    body = {"id": uuid.uuid4().hex, "text": text}
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        try:
            async with httpx.AsyncClient(base_url=natter_module.url, timeout=TIMEOUT) as http:
                r = await http.post(f"/api/rooms/{room}/messages", json=body)
            if r.status_code not in (429, 503):
                assert r.status_code == 201, r.text
                return int(r.json()["seq"])
            wait = float(r.headers.get("Retry-After", "0.05"))
        except httpx.TransportError:
            wait = 0.05
        assert asyncio.get_running_loop().time() + wait < deadline, f"could not post {text!r}"
        await asyncio.sleep(wait)


async def test_two_clients_chat_in_the_same_order(chatter: Any) -> None:
    tok = token()
    alice = await chatter("general", "alice")
    bob = await chatter("general", "bob")

    alice.type(f"hi bob {tok}")
    bob.type(f"hi alice {tok}")
    await alice.wait_text(f"hi alice {tok}")
    await bob.wait_text(f"hi bob {tok}")
    alice.type(f"how are you {tok}")
    await bob.wait_text(f"how are you {tok}")
    await alice.wait_text(f"how are you {tok}")

    assert ("alice", f"hi bob {tok}") in bob.said()
    assert ("bob", f"hi alice {tok}") in alice.said()
    # Both print the same messages in the same (seq) order, each once.
    assert alice.texts_with(tok) == bob.texts_with(tok)
    assert len(alice.texts_with(tok)) == 3
    assert await alice.quit() == 0
    assert await bob.quit() == 0


async def test_join_prints_history_and_since_skips_what_was_seen(
    natter_module: Any, chatter: Any
) -> None:
    tok = token()
    seqs = [await post(natter_module, "random", f"m{i} {tok}") for i in range(3)]

    fresh = await chatter("random", "carol")
    await fresh.wait_text(f"m2 {tok}")
    assert fresh.texts_with(tok) == [f"m0 {tok}", f"m1 {tok}", f"m2 {tok}"]

    resumed = await chatter("random", "dave", since=seqs[0])
    await resumed.wait_text(f"m2 {tok}")
    assert resumed.texts_with(tok) == [f"m1 {tok}", f"m2 {tok}"]
    assert resumed.client.last_seq is not None and resumed.client.last_seq >= seqs[2]


async def test_too_large_is_reported_and_the_client_keeps_chatting(chatter: Any) -> None:
    tok = token()
    erin = await chatter("general", "erin")
    erin.type("x" * 5000)  # over the room's maxMessageSize (4096), under the frame limit
    await eventually(
        TIMEOUT, lambda: any("not sent (too_large" in line for line in erin.out), "too_large"
    )
    erin.type(f"still here {tok}")
    await erin.wait_text(f"still here {tok}")
    assert not erin.client.pending
    assert await erin.quit() == 0


async def test_unknown_room_exits_with_an_error(natter_module: Any) -> None:
    out: list[str] = []

    async def emit(line: str) -> None:
        out.append(line)

    never: asyncio.Event = asyncio.Event()

    async def read_line() -> str | None:
        await never.wait()
        return None

    client = ChatClient(natter_module.ws_url, "no-such-room", "frank", emit)
    assert await asyncio.wait_for(client.run(read_line), TIMEOUT) == 1
    assert any("unknown_room" in line for line in out), out


async def test_gateway_killed_client_resumes_with_nothing_missed_or_repeated(
    natter_module: Any, chatter: Any
) -> None:
    tok = token()
    gina = await chatter("ops", "gina")
    before = [f"before{i} {tok}" for i in range(5)]
    for text in before:
        await post(natter_module, "ops", text)
    await gina.wait_text(before[-1])

    killed = gina.client.node
    assert killed in natter_module.gateway_pids(), f"welcome's node {killed!r} is no gateway pid"
    natter_module.kill_gateway(killed)
    # Sent while the socket is dead or being replaced: retried with the same id.
    gina.type(f"mine {tok}")
    during = [f"during{i} {tok}" for i in range(60)]  # more than one history page
    for text in during:
        await post(natter_module, "ops", text)

    await gina.wait_text(during[-1])
    await gina.wait_text(f"mine {tok}")
    await eventually(TIMEOUT, lambda: not gina.client.pending, "the retried line to be acked")
    assert gina.client.connections >= 2
    assert gina.client.node != killed
    texts = gina.texts_with(tok)
    assert sorted(texts) == sorted({*before, *during, f"mine {tok}"}), texts  # each exactly once
    others = [t for t in texts if not t.startswith("mine")]
    assert others == before + during  # in order
    assert await gina.quit() == 0


async def test_natter_chat_command(natter_module: Any) -> None:
    tok = token()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "natter", "chat",
        "--room", "general", "--user", "hank", "--url", natter_module.ws_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(f"hello from the terminal {tok}\n".encode())
        await proc.stdin.drain()

        async def read_until_own_line() -> str:
            assert proc.stdout is not None
            while True:
                raw = await proc.stdout.readline()
                assert raw, "natter chat closed stdout early"
                line = raw.decode().rstrip("\n")
                if tok in line:
                    return line

        line = await asyncio.wait_for(read_until_own_line(), TIMEOUT)
        m = LINE_RE.match(line)
        assert m and m["user"] == "hank" and m["text"] == f"hello from the terminal {tok}", line

        proc.stdin.write(b"quit\n")
        await proc.stdin.drain()
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        notices = (await proc.stderr.read()).decode()
        assert "connected to #general as hank" in notices
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
