"""The timer repairs what changes behind the operator's back and keeps status true."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from nats.aio.client import Client as NATS
from nats.js import api

from natter.bus import RoomAdmin
from natter.embedded import NatsCluster
from natter.reconcile import stream_config
from natter.rooms import REGISTRY_BUCKET, Room
from tests.fixtures.kube import KubeAPI
from tests.fixtures.poll import check_for
from tests.operator.conftest import (
    RESYNC_SECONDS,
    OperatorFactory,
    Stopwatch,
    ready_room,
    reasons,
    room_manifest,
)

pytestmark = pytest.mark.slow


async def test_deleted_stream_and_registry_entry_come_back(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    start_operator()
    kube.apply(room_manifest("general", ns))
    await check_for(60, lambda: ready_room(kube, ns, "general"), what="general Ready")
    room = Room.build(ns, "general", {})
    admin = RoomAdmin(nats_client)
    created = (await admin.stream_info(room.stream)).created  # type: ignore[union-attr]

    kv = await nats_client.jetstream().key_value(REGISTRY_BUCKET)
    await kv.delete(room.key)
    assert await admin.delete_stream(room.stream)
    clock = Stopwatch()

    async def back() -> bool:
        info = await admin.stream_info(room.stream)
        return info is not None and info.created != created

    await check_for(3 * RESYNC_SECONDS + 10, back, what="stream recreated")
    repaired = clock.elapsed
    print(f"deleted stream repaired in {repaired:.2f}s (timer period {RESYNC_SECONDS}s)")
    assert repaired < RESYNC_SECONDS + 5
    entry = await check_for(10, lambda: kv.get(room.key), what="registry entry restored")
    assert b'"stream":"' + room.stream.encode() in entry.value
    info = await admin.stream_info(room.stream)
    assert info is not None and info.config.num_replicas == 3
    await check_for(10, lambda: "DriftRepaired" in reasons(kube, ns, "general"), what="event")
    assert ready_room(kube, ns, "general")


async def test_changed_stream_is_corrected(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    start_operator()
    kube.apply(room_manifest("ops", ns, retention={"maxMessages": 1000}))
    await check_for(60, lambda: ready_room(kube, ns, "ops"), what="ops Ready")
    room = Room.build(ns, "ops", {"retention": {"maxMessages": 1000}})
    admin = RoomAdmin(nats_client)
    tampered = stream_config(room)
    tampered.max_msgs = 5
    tampered.max_age = 3600.0
    await admin.update_stream(tampered)

    async def corrected() -> bool:
        info = await admin.stream_info(room.stream)
        assert info is not None
        config: api.StreamConfig = info.config
        return bool(config.max_msgs == 1000 and config.max_age == pytest.approx(720 * 3600))

    await check_for(3 * RESYNC_SECONDS + 10, corrected, what="stream corrected")
    await check_for(10, lambda: "DriftRepaired" in reasons(kube, ns, "ops"), what="event")


async def test_leader_kill_shows_new_leader(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_cluster: NatsCluster,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    start_operator()
    kube.apply(room_manifest("random", ns))
    obj = await check_for(60, lambda: ready_room(kube, ns, "random"), what="random Ready")
    stream = obj["status"]["stream"]
    old = stream["leader"]
    assert old == await nats_cluster.stream_leader(stream["name"])

    def current(count: int) -> Callable[[], bool]:
        def check() -> bool:
            room = kube.get("chatroom", "random", ns) or {}
            return bool(room.get("status", {}).get("stream", {}).get("replicas") == count)

        return check

    await check_for(30, current(3), what="status shows 3 current replicas")

    nats_cluster.kill(old)

    async def new_leader() -> str | None:
        leader = await nats_cluster.stream_leader(stream["name"])
        return leader if leader != old else None

    new = await check_for(30, new_leader, what="a new stream leader")

    def shows_new_leader() -> bool:
        room = ready_room(kube, ns, "random")
        return bool(room and room["status"]["stream"]["leader"] == new)

    await check_for(3 * RESYNC_SECONDS + 30, shows_new_leader, what=f"status leader {new}")
    row = kube.kubectl("get", "room", "random", "-n", ns, "--no-headers").stdout.split()
    assert row[1] == "True" and row[4] == new

    await check_for(60, current(2), what="status shows 2 current replicas")
