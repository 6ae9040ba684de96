"""Each component's NATS user can do its job and nothing else, on a real 3-node cluster.

Every denial is shown twice: the server reports the permissions violation for
the exact subject, and the state it would have changed is unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from natter import bus
from natter.embedded import NatsCluster, check_for
from natter.errors import Unavailable
from natter.natsauth import NatsUser, NatsUsers, bridge_user
from natter.reconcile import reconcile_room
from natter.rooms import Room

LOBBY = Room.build("default", "lobby", {"retention": {"maxAge": "1h"}})
SECRET = Room.build("default", "secret", {"retention": {"maxAge": "1h"}})


@dataclass
class Secured:
    cluster: NatsCluster
    users: NatsUsers
    clients: list[NATS] = field(default_factory=list)

    async def connect(self, name: str) -> Client:
        user = self.users[name]
        client = Client(user)
        client.nc = await nats.connect(
            servers=self.cluster.client_urls,
            user=user.name,
            password=user.password,
            inbox_prefix=user.env()["NATTER_NATS_INBOX_PREFIX"],
            error_cb=client.on_error,
            max_reconnect_attempts=2,
            connect_timeout=2,
        )
        self.clients.append(client.nc)
        return client


@dataclass
class Client:
    user: NatsUser
    nc: NATS = field(init=False)
    errors: list[str] = field(default_factory=list)

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def violation(self, kind: str, subject: str) -> None:
        """Wait until the server has reported a permissions violation for ``subject``."""
        needle = f'permissions violation for {kind} to "{subject}"'
        seen = self.errors
        await check_for(10, lambda: any(needle.lower() in e.lower() for e in seen), what=needle)


@pytest_asyncio.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    users = NatsUsers.generate("default", bridge_rooms=["lobby"])
    cluster = NatsCluster(tmp_path / "nats", 3, extra_config=users.render())
    await cluster.start()
    env = Secured(cluster, users)
    try:
        op = await env.connect("operator")
        admin = bus.RoomAdmin(op.nc)
        await admin.registry()
        for room in (LOBBY, SECRET):
            await reconcile_room(admin, room)
        yield env
    finally:
        for nc in env.clients:
            if not nc.is_closed:
                await nc.close()
        await cluster.stop()


async def last_seq(env: Secured, room: Room) -> int:
    op = await env.connect("operator")
    info = await bus.RoomAdmin(op.nc).stream_info(room.stream)
    assert info is not None
    return int(info.state.last_seq)


async def test_a_client_without_credentials_is_refused(secured: Secured) -> None:
    with pytest.raises((nats.errors.Error, OSError)) as caught:
        await nats.connect(
            servers=secured.cluster.client_urls[:1], allow_reconnect=False, connect_timeout=2
        )
    assert "authorization" in str(caught.value).lower()


async def test_operator_manages_streams_and_registry(secured: Secured) -> None:
    op = await secured.connect("operator")
    admin = bus.RoomAdmin(op.nc)
    changed = Room.build("default", "lobby", {"retention": {"maxAge": "2h"}})
    status = await reconcile_room(admin, changed)
    assert status.action in ("updated", "unchanged", "created") or status.stream
    info = await admin.stream_info(LOBBY.stream)
    assert info is not None and info.config.max_age == pytest.approx(7200)
    registry = bus.Registry(op.nc)
    assert await registry.lookup("default", "lobby") is not None


async def test_operator_cannot_chat(secured: Secured) -> None:
    op = await secured.connect("operator")
    with pytest.raises(Unavailable):
        await bus.RoomBus(op.nc).publish(LOBBY, b'{"text": "x"}', msg_id="op-1", timeout=1)
    await op.violation("publish", "chat.default.lobby.msg")
    assert await last_seq(secured, LOBBY) == 0


async def test_gateway_chats_reads_and_follows(secured: Secured) -> None:
    gw = await secured.connect("gateway")
    room_bus = bus.RoomBus(gw.nc)
    for i in range(3):
        assert (await room_bus.publish(SECRET, b"{}", msg_id=f"g{i}", timeout=5)).seq == i + 1
    assert [seq for seq, _ in await room_bus.read(SECRET, 1, 3)] == [1, 2, 3]
    assert (await bus.Registry(gw.nc).lookup("default", "secret")) is not None
    assert len(await bus.Registry(gw.nc).all()) == 2
    assert await bus.jetstream_ready(gw.nc)
    assert gw.errors == []


async def test_gateway_cannot_delete_or_change_streams(secured: Secured) -> None:
    gw = await secured.connect("gateway")
    admin = bus.RoomAdmin(gw.nc, timeout=1)
    with pytest.raises(Unavailable):
        await admin.delete_stream(LOBBY.stream)
    await gw.violation("publish", f"$JS.API.STREAM.DELETE.{LOBBY.stream}")
    info = await admin.stream_info(LOBBY.stream)  # reading is allowed
    assert info is not None
    config = info.config
    config.max_msgs = 1
    with pytest.raises(Unavailable):
        await admin.update_stream(config)
    await gw.violation("publish", f"$JS.API.STREAM.UPDATE.{LOBBY.stream}")
    after = await admin.stream_info(LOBBY.stream)
    assert after is not None and after.config.max_msgs != 1


async def test_gateway_cannot_write_the_registry(secured: Secured) -> None:
    gw = await secured.connect("gateway")
    js = gw.nc.jetstream(timeout=1)
    kv = await js.key_value("natter-rooms")
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await kv.put("default.lobby", b'{"forged": true}')
    await gw.violation("publish", "$KV.natter-rooms.default.lobby")
    room = await bus.Registry(gw.nc).lookup("default", "lobby")
    assert room is not None and room.spec.access.visibility == "public"


async def test_bridge_publishes_only_to_its_room(secured: Secured) -> None:
    br = await secured.connect(bridge_user("default", "lobby"))
    room_bus = bus.RoomBus(br.nc)
    assert (await room_bus.publish(LOBBY, b"{}", msg_id="b1", timeout=5)).seq == 1
    assert [seq for seq, _ in await room_bus.read(LOBBY, 1, 1)] == [1]
    with pytest.raises(Unavailable):
        await room_bus.publish(SECRET, b"{}", msg_id="b2", timeout=1)
    await br.violation("publish", "chat.default.secret.msg")
    assert await last_seq(secured, SECRET) == 0


async def test_bridge_cannot_read_another_room(secured: Secured) -> None:
    gw = await secured.connect("gateway")
    await bus.RoomBus(gw.nc).publish(SECRET, b'{"text": "private"}', msg_id="s1")
    br = await secured.connect(bridge_user("default", "lobby"))
    with pytest.raises(Unavailable):
        await bus.RoomBus(br.nc, timeout=1).read(SECRET, 1, 1)
    await br.violation("publish", f"$JS.API.STREAM.INFO.{SECRET.stream}")


async def test_no_user_can_read_another_users_replies(secured: Secured) -> None:
    br = await secured.connect(bridge_user("default", "lobby"))
    await br.nc.subscribe("_INBOX_gateway.>")
    await br.violation("subscription", "_INBOX_gateway.>")
    await br.nc.subscribe("_INBOX.>")
    await br.violation("subscription", "_INBOX.>")


async def test_analytics_reads_but_cannot_publish(secured: Secured) -> None:
    gw = await secured.connect("gateway")
    await bus.RoomBus(gw.nc).publish(LOBBY, b"{}", msg_id="a1")
    an = await secured.connect("analytics")
    assert [seq for seq, _ in await bus.RoomBus(an.nc).read(LOBBY, 1, 1)] == [1]
    with pytest.raises(Unavailable):
        await bus.RoomBus(an.nc).publish(LOBBY, b"{}", msg_id="a2", timeout=1)
    await an.violation("publish", "chat.default.lobby.msg")
    assert await last_seq(secured, LOBBY) == 1
