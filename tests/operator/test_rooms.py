"""ChatRooms applied with kubectl become replicated streams whose status tells the truth."""

from __future__ import annotations

import uuid

import orjson
import pytest
from nats.aio.client import Client as NATS

from natter.bus import RoomAdmin, RoomBus
from natter.embedded import NatsCluster
from natter.rooms import Room, parse_duration, parse_quantity
from tests.fixtures.kube import KubeAPI
from tests.fixtures.poll import check_for
from tests.operator.conftest import (
    OperatorFactory,
    Stopwatch,
    condition,
    ready_room,
    reasons,
    room_manifest,
    sample_rooms,
)

pytestmark = pytest.mark.slow


async def test_sample_rooms_become_ready_streams(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_cluster: NatsCluster,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    operator = start_operator(nats_cluster.nats_url)
    await operator.wait_live()
    rooms = sample_rooms(ns)
    names = [doc["metadata"]["name"] for doc in rooms]

    clock = Stopwatch()
    kube.apply(rooms)
    await check_for(60, lambda: all(ready_room(kube, ns, n) for n in names), what="rooms Ready")
    print(f"kubectl apply -> Ready for {len(names)} rooms: {clock.elapsed:.2f}s")

    admin = RoomAdmin(nats_client)
    for doc in rooms:
        room = Room.build(ns, doc["metadata"]["name"], doc["spec"])
        info = await admin.stream_info(room.stream)
        assert info is not None, room.stream
        config, spec = info.config, doc["spec"]
        assert config.num_replicas == spec["replicas"] == 3
        assert config.max_age == pytest.approx(parse_duration(spec["retention"]["maxAge"]))
        assert config.max_msgs == spec["retention"]["maxMessages"]
        assert config.max_bytes == parse_quantity(spec["retention"]["maxBytes"])
        assert config.max_msg_size == room.max_stored_bytes
        status = kube.get("chatroom", room.name, ns)["status"]  # type: ignore[index]
        assert status["stream"]["name"] == room.stream
        assert status["stream"]["leader"] == await nats_cluster.stream_leader(room.stream)
        assert condition(kube.get("chatroom", room.name, ns), "SpecApplied")["status"] == "True"  # type: ignore[index]
        assert "StreamCreated" in reasons(kube, ns, room.name)

    leaders = {n.name for n in nats_cluster.nodes}

    def table() -> dict[str, list[str]] | None:
        lines = kube.kubectl("get", "rooms", "-n", ns).stdout.splitlines()
        assert lines[0].split() == ["NAME", "READY", "REPLICAS", "MESSAGES", "LEADER", "AGE"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert sorted(rows) == sorted(names)
        # Replicas counts current peers: a follower may still be catching up at first.
        done = all(
            r[1] == "True" and r[2] == "3" and r[3] == "0" and r[4] in leaders
            for r in rows.values()
        )
        return rows if done else None

    await check_for(30, table, what="kubectl get rooms: True, 3 replicas, a leader")


async def test_status_follows_messages(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_cluster: NatsCluster,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    start_operator(nats_cluster.nats_url)
    kube.apply(room_manifest("lobby", ns, replicas=1))
    await check_for(60, lambda: ready_room(kube, ns, "lobby"), what="lobby Ready")
    room = Room.build(ns, "lobby", {"replicas": 1})
    bus = RoomBus(nats_client)
    for text in ("hello", "world"):
        payload = orjson.dumps({"id": uuid.uuid4().hex, "user": "t", "text": text, "ts": "now"})
        await bus.publish(room, payload, msg_id=uuid.uuid4().hex)

    def counted() -> bool:
        stream = (kube.get("chatroom", "lobby", ns) or {}).get("status", {}).get("stream", {})
        return bool(stream.get("messages") == 2 and stream.get("lastSeq") == 2)

    await check_for(30, counted, what="status.stream.messages == 2")
    row = kube.kubectl("get", "room", "lobby", "-n", ns, "--no-headers").stdout.split()
    assert row[1:4] == ["True", "1", "2"]


async def test_retention_update_updates_stream(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_cluster: NatsCluster,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    start_operator(nats_cluster.nats_url)
    kube.apply(room_manifest("news", ns))
    await check_for(60, lambda: ready_room(kube, ns, "news"), what="news Ready")

    kube.apply(
        room_manifest(
            "news",
            ns,
            retention={"maxAge": "24h", "maxMessages": 500, "maxBytes": "64Mi"},
            maxMessageSize=1024,
        )
    )
    room = Room.build(ns, "news", {"maxMessageSize": 1024})
    admin = RoomAdmin(nats_client)

    async def updated() -> bool:
        info = await admin.stream_info(room.stream)
        assert info is not None
        c = info.config
        return bool(
            c.max_age == pytest.approx(86400)
            and c.max_msgs == 500
            and c.max_bytes == 64 << 20
            and c.max_msg_size == room.max_stored_bytes
        )

    await check_for(30, updated, what="stream updated")
    obj = await check_for(30, lambda: ready_room(kube, ns, "news"), what="generation 2 Ready")
    assert obj["metadata"]["generation"] == 2
    assert obj["status"]["observedGeneration"] == 2
    assert condition(obj, "SpecApplied")["observedGeneration"] == 2  # type: ignore[index]
    assert "StreamUpdated" in reasons(kube, ns, "news")
