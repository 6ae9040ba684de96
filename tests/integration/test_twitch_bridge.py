"""The Twitch bridge against a fake Twitch IRC server and a real nats-server.

The fake server (tests/fixtures/fake_twitch.py) listens on a free loopback
port; NATS is one stand-alone node per test that the test may kill and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
import trustme
from prometheus_client import REGISTRY

from natter.bridges.twitch import TwitchBridge, TwitchSettings
from natter.bus import RoomAdmin, RoomBus
from natter.config import Settings
from natter.embedded import check_for, free_ports
from natter.reconcile import stream_config
from natter.rooms import Room
from tests.fixtures.fake_twitch import FakeTwitch
from tests.fixtures.nats_solo import SoloNats

CHANNEL = "dallas"


class Harness:
    """NATS, one room, a client to read it, and the bridges a test starts."""

    def __init__(self, solo: SoloNats, room: Room, nc: Any) -> None:
        self.solo = solo
        self.room = room
        self.nc = nc
        self.bus = RoomBus(nc)
        self.runs: list[tuple[TwitchBridge, asyncio.Task[None]]] = []

    def bridge(self, fake: FakeTwitch, room: str | None = None, **overrides: Any) -> TwitchBridge:
        options: dict[str, Any] = {
            "server": fake.address,
            "tls": False,
            "backoff_initial": 0.05,
            "backoff_max": 0.4,
            "publish_timeout": 1.0,
            "http_port": None,
            "shutdown_grace": 5.0,
        }
        options.update(overrides)
        settings = Settings(nats_url=self.solo.url, nats_connect_timeout=1.0)
        return TwitchBridge(
            CHANNEL, room or self.room.name, settings=settings, twitch=TwitchSettings(**options)
        )

    def start(self, fake: FakeTwitch, room: str | None = None, **overrides: Any) -> TwitchBridge:
        bridge = self.bridge(fake, room, **overrides)
        self.runs.append((bridge, asyncio.create_task(bridge.run())))
        return bridge

    async def stop(self, bridge: TwitchBridge) -> None:
        for item in list(self.runs):
            if item[0] is bridge:
                bridge.stop()
                await asyncio.wait_for(item[1], 20)
                self.runs.remove(item)

    async def stored(self) -> list[dict[str, Any]]:
        _, last = await self.bus.bounds(self.room)
        return [orjson.loads(data) for _, data in await self.bus.read(self.room, 1, last)]

    async def wait_stored(self, count: int, within: float = 15.0) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            docs = await self.stored()
            return docs if len(docs) >= count else None

        docs: list[dict[str, Any]] = await check_for(within, enough, what=f"{count} stored")
        return docs


@pytest.fixture
async def harness(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    solo = SoloNats(tmp_path / "nats")
    await solo.start()
    nc = await nats.connect(solo.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    name = "tw-" + request.node.name[5:30].replace("_", "-").strip("-")
    room = Room.build("default", name, {"replicas": 1})
    await RoomAdmin(nc).add_stream(stream_config(room))
    h = Harness(solo, room, nc)
    try:
        yield h
    finally:
        for bridge, task in h.runs:
            bridge.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 20)
        await nc.close()
        solo.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwitch]:
    server = await FakeTwitch().start()
    try:
        yield server
    finally:
        await server.close()


def metric(name: str, room: Room) -> float:
    value = REGISTRY.get_sample_value(name, {"channel": CHANNEL, "room": room.name})
    return value or 0.0


async def test_anonymous_handshake(harness: Harness, fake: FakeTwitch) -> None:
    bridge = harness.start(fake)
    client = await fake.wait_joined()
    assert client.received[0] == "CAP REQ :twitch.tv/tags twitch.tv/commands"
    assert client.commands[:4] == ["CAP", "PASS", "NICK", "JOIN"]
    assert client.nick is not None and client.nick.startswith("justinfan")
    assert client.nick[len("justinfan") :].isdigit()
    assert client.caps == {"twitch.tv/tags", "twitch.tv/commands"}
    assert client.channels == {f"#{CHANNEL}"}
    await check_for(5, lambda: bridge.ready, what="bridge ready")


async def test_oauth_login(harness: Harness) -> None:
    fake = await FakeTwitch(login="natterbot", token="s3cret").start()
    try:
        harness.start(fake, oauth_token="s3cret", username="NatterBot")
        client = await fake.wait_joined()
        assert client.password == "oauth:s3cret"
        assert client.nick == "natterbot"
    finally:
        await fake.close()


async def test_bad_token_backs_off_and_retries(harness: Harness) -> None:
    fake = await FakeTwitch(login="natterbot", token="right").start()
    try:
        bridge = harness.start(fake, oauth_token="wrong", username="natterbot")
        await fake.wait_for(lambda: len(fake.clients) >= 3, what="three login attempts")
        assert fake.joins == 0 and not bridge.joined
        assert all(c.password == "oauth:wrong" for c in fake.clients if c.closed)
    finally:
        await fake.close()


async def test_privmsg_is_stored_with_its_twitch_id(harness: Harness, fake: FakeTwitch) -> None:
    harness.start(fake)
    await fake.wait_joined()
    await fake.privmsg(CHANNEL, "ronni", "HeyGuys <3", msg_id="id-1", display_name="Ronni")
    await fake.privmsg(CHANNEL, "kappa_fan", "no display name", msg_id="id-2", display_name="")
    await fake.privmsg(
        CHANNEL,
        "ロナ",
        "\x01ACTION waves\x01",
        msg_id="id-3",
        display_name="ロナルド",
        sent_ms=1642719320727,
    )
    await fake.privmsg("elsewhere", "ronni", "wrong channel", msg_id="id-x")
    docs = await harness.wait_stored(3)
    assert docs == [
        {
            "id": "id-1",
            "user": "Ronni",
            "text": "HeyGuys <3",
            "ts": "2022-01-21T17:30:03.573Z",
            "source": "twitch",
        },
        {
            "id": "id-2",
            "user": "kappa_fan",
            "text": "no display name",
            "ts": "2022-01-21T17:30:03.573Z",
            "source": "twitch",
        },
        {
            "id": "id-3",
            "user": "ロナルド",
            "text": "waves",
            "action": True,
            "ts": "2022-01-20T22:55:20.727Z",
            "source": "twitch",
        },
    ]
    raw = await harness.nc.jsm().get_msg(harness.room.stream, 1)
    assert raw.headers is not None and raw.headers["Nats-Msg-Id"] == "id-1"
    assert raw.subject == "chat.default." + harness.room.name + ".msg"


async def test_escaped_tags_arrive_unescaped(harness: Harness, fake: FakeTwitch) -> None:
    harness.start(fake)
    await fake.wait_joined()
    # The fake escapes tag values on the wire (\s \: \\ \r \n); the bridge must undo it.
    await fake.privmsg(CHANNEL, "ronni", "hi", msg_id="id;with spaces\\", display_name="A B;C")
    (doc,) = await harness.wait_stored(1)
    assert doc["id"] == "id;with spaces\\" and doc["user"] == "A B;C"


async def test_ping_is_answered_with_pong(harness: Harness, fake: FakeTwitch) -> None:
    harness.start(fake)
    client = await fake.wait_joined()
    await fake.ping("tmi.twitch.tv")
    await fake.wait_for(lambda: client.pongs == ["tmi.twitch.tv"], what="PONG")
    await fake.ping("a b c")
    await fake.wait_for(lambda: client.pongs[-1:] == ["a b c"], what="second PONG")


async def test_silent_server_is_pinged_then_abandoned(harness: Harness) -> None:
    fake = await FakeTwitch(answer_pings=False).start()
    try:
        harness.start(fake, idle_timeout=0.3, pong_timeout=0.3)
        first = await fake.wait_joined()
        await fake.wait_for(lambda: "PING" in first.commands, what="the bridge's own PING")
        await fake.wait_joined(2)  # no answer: it gave up on that connection and came back
        await fake.wait_for(lambda: first.closed, what="first connection closed")
    finally:
        await fake.close()


async def test_reconnect_command_is_honoured(harness: Harness, fake: FakeTwitch) -> None:
    bridge = harness.start(fake, backoff_initial=30.0, backoff_max=30.0, reconnect_overlap=3.0)
    first = await fake.wait_joined()
    await fake.privmsg(CHANNEL, "ronni", "before", msg_id="r-1")
    await harness.wait_stored(1)
    before = metric("natter_twitch_reconnects_total", harness.room)
    await fake.reconnect()
    # A RECONNECT is not a failure: the next connection comes at once, not after backoff.
    second = await fake.wait_joined(2, within=5)
    assert second is not first
    # Until the new connection has settled, the old one is still read (make before break):
    # what Twitch sends on either is stored, and what it sends on both is stored once.
    await fake.privmsg(CHANNEL, "ronni", "on the old one", msg_id="r-2", client=first)
    await fake.privmsg(CHANNEL, "ronni", "on both", msg_id="r-3", client=first)
    await fake.privmsg(CHANNEL, "ronni", "on both", msg_id="r-3", client=second)
    await harness.wait_stored(3)
    await fake.wait_for(lambda: first.closed, what="old connection closed by the bridge")
    await fake.privmsg(CHANNEL, "ronni", "after", msg_id="r-4")
    docs = await harness.wait_stored(4)
    assert [d["id"] for d in docs] == ["r-1", "r-2", "r-3", "r-4"]
    assert metric("natter_twitch_reconnects_total", harness.room) == before + 1
    assert bridge.joined and len(fake.clients) == 2


async def test_drop_then_replay_stores_no_duplicates(harness: Harness, fake: FakeTwitch) -> None:
    bridge = harness.start(fake)
    await fake.wait_joined()
    for i in range(3):
        await fake.privmsg(CHANNEL, "ronni", f"m{i}", msg_id=f"d-{i}")
    await harness.wait_stored(3)
    await fake.drop()
    await fake.wait_joined(2)
    await fake.replay()  # the three again, as a replaying server would send them
    await fake.privmsg(CHANNEL, "ronni", "m3", msg_id="d-3")
    docs = await harness.wait_stored(4)
    await fake.privmsg(CHANNEL, "ronni", "m4", msg_id="d-4")
    docs = await harness.wait_stored(5)
    assert [d["id"] for d in docs] == ["d-0", "d-1", "d-2", "d-3", "d-4"]
    await harness.stop(bridge)

    # A new bridge process remembers nothing: JetStream's Nats-Msg-Id dedup keeps it exact.
    dup_before = metric("natter_twitch_messages_duplicate_total", harness.room)
    harness.start(fake)
    await fake.wait_joined(3)
    await fake.replay()
    await check_for(
        10,
        lambda: metric("natter_twitch_messages_duplicate_total", harness.room) >= dup_before + 5,
        what="five duplicates reported by JetStream",
    )
    assert [d["id"] for d in await harness.stored()] == ["d-0", "d-1", "d-2", "d-3", "d-4"]


async def test_garbage_lines_are_skipped(harness: Harness, fake: FakeTwitch) -> None:
    harness.start(fake)
    client = await fake.wait_joined()
    before = metric("natter_twitch_lines_malformed_total", harness.room)
    garbage: list[bytes] = [
        b"@only-tags=1",
        b":only.a.source",
        b"PR1VMSG #dallas :bad command",
        b":a!a@a PRIVMSG #dallas :\xff\xfe not utf-8",
        b"@=x :a!a@a PRIVMSG #dallas :tag without key",
        b"PRIVMSG #dallas :no sender",
        b"\x00\x01\x02",
        b"x" * 20000,  # far longer than any IRC line
    ]
    for line in garbage:
        await fake.send(line + b"\r\n")
    await fake.send(b"\r\n")  # blank lines are just skipped
    await fake.privmsg(CHANNEL, "ronni", "still here", msg_id="g-1")
    (doc,) = await harness.wait_stored(1)
    assert doc["text"] == "still here"
    assert metric("natter_twitch_lines_malformed_total", harness.room) == before + len(garbage)
    assert len(fake.clients) == 1 and not client.closed


async def test_message_the_room_refuses_is_skipped(harness: Harness, fake: FakeTwitch) -> None:
    small = Room.build(
        "default", harness.room.name[:40] + "-small", {"replicas": 1, "maxMessageSize": 16}
    )
    await RoomAdmin(harness.nc).add_stream(stream_config(small))
    bridge = harness.start(fake, room=small.name)
    await fake.wait_joined()
    await fake.privmsg(CHANNEL, "ronni", "x" * 3000, msg_id="big-1")  # over the stream's limit
    await fake.privmsg(CHANNEL, "ronni", "fits", msg_id="ok-1")
    labels = {"channel": CHANNEL, "room": small.name}
    await check_for(
        10, lambda: REGISTRY.get_sample_value("natter_twitch_messages_published_total", labels)
    )
    assert REGISTRY.get_sample_value("natter_twitch_messages_rejected_total", labels) == 1
    docs = [orjson.loads(d) for _, d in await harness.bus.read(small, 1, 10)]
    assert [d["id"] for d in docs] == ["ok-1"]
    assert bridge.buffered == 0


async def test_nats_down_and_back_loses_nothing(harness: Harness, fake: FakeTwitch) -> None:
    bridge = harness.start(fake)
    await fake.wait_joined()
    await fake.privmsg(CHANNEL, "ronni", "before", msg_id="n-0")
    await harness.wait_stored(1)

    harness.solo.kill()
    for i in range(1, 6):
        await fake.privmsg(CHANNEL, "ronni", f"while down {i}", msg_id=f"n-{i}")
    await check_for(10, lambda: bridge.store.held == 5, what="5 held")
    await check_for(10, lambda: not bridge.ready, what="not ready: joined, but NATS is gone")
    await harness.solo.restart()

    docs = await harness.wait_stored(6, within=30)
    assert [d["id"] for d in docs] == [f"n-{i}" for i in range(6)]
    await check_for(10, lambda: bridge.ready, what="ready again")
    assert bridge.buffered == 0


async def test_nats_down_at_start_then_full_buffer(harness: Harness, fake: FakeTwitch) -> None:
    harness.solo.kill()
    bridge = harness.start(fake, buffer_size=2)
    client = await fake.wait_joined()  # Twitch does not wait for NATS
    for i in range(6):
        await fake.privmsg(CHANNEL, "ronni", f"m{i}", msg_id=f"f-{i}")
    # Two fill the buffer, one more waits in the reader: reading has paused, nothing dropped.
    await check_for(10, lambda: bridge.buffered == 2, what="buffer full")
    await fake.ping("still reading?")
    await harness.solo.restart()
    docs = await harness.wait_stored(6, within=30)
    assert [d["id"] for d in docs] == [f"f-{i}" for i in range(6)]
    await fake.wait_for(lambda: client.pongs == ["still reading?"], what="PONG after resuming")


async def test_relay_posts_room_messages_to_twitch(harness: Harness) -> None:
    fake = await FakeTwitch(login="natterbot", token="tok").start()
    try:
        harness.start(fake, oauth_token="tok", username="natterbot", relay=True)
        client = await fake.wait_joined()
        await check_for(10, lambda: metric("natter_twitch_joined", harness.room) == 1)

        async def post(doc: dict[str, Any]) -> None:
            await harness.bus.publish(harness.room, orjson.dumps(doc), msg_id=doc["id"])

        # The relay follows from the stream's end once it is subscribed; keep posting
        # a probe until one arrives so the test does not race the subscription.
        n = 0

        async def probe_relayed() -> bool:
            nonlocal n
            n += 1
            await post({"id": f"p{n}", "user": "probe", "text": "ping", "ts": "x"})
            await asyncio.sleep(0)
            return bool(client.relayed)

        await check_for(10, probe_relayed, interval=0.2, what="relay subscribed")
        await post({"id": "a1", "user": "alice", "text": "hello\r\nJOIN #evil", "ts": "x"})
        await post(
            {"id": "t1", "user": "Ronni", "text": "from twitch", "ts": "x", "source": "twitch"}
        )
        await post({"id": "a2", "user": "bob", "text": "/ban ronni", "ts": "x"})
        await fake.wait_for(
            lambda: any(m.trailing.startswith("<bob>") for m in client.relayed), what="relayed"
        )
        lines = [m.trailing for m in client.relayed if not m.trailing.startswith("<probe>")]
        assert lines == ["<alice> hello JOIN #evil", "<bob> /ban ronni"]
        assert all(m.params[0] == f"#{CHANNEL}" for m in client.relayed)
        assert client.channels == {f"#{CHANNEL}"}  # the injected JOIN never reached IRC
        # Twitch does not echo our own lines, but if it did they would not come back in.
        await fake.privmsg(CHANNEL, "natterbot", "<alice> echo", msg_id="echo-1")
        await fake.privmsg(CHANNEL, "ronni", "real", msg_id="real-1")
        docs = await check_for(10, lambda: _has_id(harness, "real-1"), what="twitch message stored")
        assert not any(d["id"] == "echo-1" for d in docs)
    finally:
        await fake.close()


async def _has_id(harness: Harness, msg_id: str) -> list[dict[str, Any]] | None:
    docs = await harness.stored()
    return docs if any(d["id"] == msg_id for d in docs) else None


async def test_relay_stays_off_without_credentials(harness: Harness, fake: FakeTwitch) -> None:
    bridge = harness.start(fake, relay=True)
    await fake.wait_joined()
    assert not bridge.relaying and bridge.relay is None


async def test_tls_connection_is_verified(harness: Harness, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    fake = await FakeTwitch(ssl_context=server_ctx).start()
    try:
        # Trusting the system CAs only, the fake's certificate is refused: no login.
        untrusting = harness.start(fake, tls=True)
        await check_for(
            10,
            lambda: metric("natter_twitch_reconnects_total", harness.room) >= 2,
            what="failed TLS attempts",
        )
        assert fake.joins == 0
        await harness.stop(untrusting)
        # Trusting the fake's CA, it logs in over TLS.
        bridge = harness.start(fake, tls=True, ca_file=str(ca_file))
        await fake.wait_joined()
        await fake.privmsg(CHANNEL, "ronni", "over tls", msg_id="tls-1")
        (doc,) = await harness.wait_stored(1)
        assert doc["text"] == "over tls" and bridge.tls
    finally:
        await fake.close()


async def test_run_serves_probes_and_stops_on_sigterm(harness: Harness, fake: FakeTwitch) -> None:
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "NATTER_NATS_URL": harness.solo.url,
        "NATTER_TWITCH_HTTP_HOST": "127.0.0.1",
        "NATTER_TWITCH_HTTP_PORT": str(port),
        "NATTER_LOG_FORMAT": "json",
    }
    code = (
        "from natter.bridges.twitch import run\n"
        "from natter.config import Settings\n"
        f"run({CHANNEL!r}, {harness.room.name!r}, {fake.address!r}, False, Settings())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env, stdout=PIPE, stderr=PIPE
    )
    try:
        await fake.wait_joined(within=30)
        await fake.privmsg(CHANNEL, "ronni", "via the process", msg_id="p-1")
        await harness.wait_stored(1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            assert (await http.get("/healthz")).status_code == 200
            await check_for(10, lambda: _status(http, "/readyz", 200), what="readyz 200")
            metrics = (await http.get("/metrics")).text
            assert f'natter_twitch_messages_published_total{{channel="{CHANNEL}"' in metrics
            assert "natter_twitch_reconnects_total" in metrics
            assert (await http.get("/nope")).status_code == 404
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        events = [orjson.loads(line).get("event") for line in err.splitlines() if line[:1] == b"{"]
        assert "bridge stopped" in events
        await fake.wait_for(lambda: fake.current.closed, what="connection closed")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _status(http: httpx.AsyncClient, path: str, code: int) -> bool:
    return (await http.get(path)).status_code == code
