"""Deletion goes through the finalizer and honours deletionPolicy."""

from __future__ import annotations

import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from natter.bus import RoomAdmin
from natter.rooms import REGISTRY_BUCKET, Room
from tests.fixtures.kube import KubeAPI
from tests.fixtures.poll import check_for
from tests.operator.conftest import OperatorFactory, ready_room, reasons, room_manifest

pytestmark = pytest.mark.slow
FINALIZER = "natter.dev/stream-cleanup"


async def _registered(nc: NATS, room: Room) -> bool:
    kv = await nc.jetstream().key_value(REGISTRY_BUCKET)
    try:
        await kv.get(room.key)
    except nats.js.errors.KeyNotFoundError:  # KeyDeletedError is a subclass
        return False
    return True


async def test_retain_keeps_stream_delete_removes_it(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    start_operator()
    kube.apply(
        [
            room_manifest("keep", ns, deletionPolicy="Retain"),
            room_manifest("drop", ns, deletionPolicy="Delete"),
        ]
    )
    for name in ("keep", "drop"):
        room = await check_for(60, lambda n=name: ready_room(kube, ns, n), what=f"{name} Ready")
        assert FINALIZER in room["metadata"]["finalizers"]
    keep, drop = Room.build(ns, "keep", {}), Room.build(ns, "drop", {})
    admin = RoomAdmin(nats_client)
    assert await _registered(nats_client, keep) and await _registered(nats_client, drop)

    kube.kubectl("delete", "chatroom", "keep", "drop", "-n", ns, "--timeout=60s")

    assert kube.get("chatroom", "keep", ns) is None and kube.get("chatroom", "drop", ns) is None
    assert await admin.stream_info(keep.stream) is not None
    assert await admin.stream_info(drop.stream) is None
    assert not await _registered(nats_client, keep)
    assert not await _registered(nats_client, drop)
    assert "StreamRetained" in reasons(kube, ns, "keep")
    assert "StreamDeleted" in reasons(kube, ns, "drop")


async def test_delete_while_operator_down_completes_when_back(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    first = start_operator()
    kube.apply(room_manifest("temp", ns, deletionPolicy="Delete"))
    await check_for(60, lambda: ready_room(kube, ns, "temp"), what="temp Ready")
    room = Room.build(ns, "temp", {})
    admin = RoomAdmin(nats_client)
    first.stop()

    kube.kubectl("delete", "chatroom", "temp", "-n", ns, "--wait=false")
    pending = kube.get("chatroom", "temp", ns)
    assert pending is not None and pending["metadata"]["deletionTimestamp"]
    assert pending["metadata"]["finalizers"] == [FINALIZER]
    assert await admin.stream_info(room.stream) is not None

    start_operator()
    await check_for(60, lambda: kube.get("chatroom", "temp", ns) is None, what="temp gone")
    assert await admin.stream_info(room.stream) is None
    assert not await _registered(nats_client, room)
