"""Killing the operator mid-reconcile: the next one finishes the job without
redoing it and without reporting an error."""

from __future__ import annotations

import signal

import pytest
from nats.aio.client import Client as NATS

from natter.bus import RoomAdmin
from natter.rooms import Room
from tests.fixtures.kube import KubeAPI
from tests.fixtures.poll import check_for
from tests.operator.conftest import (
    OperatorFactory,
    condition,
    events_for,
    ready_room,
    reasons,
    room_manifest,
)

pytestmark = pytest.mark.slow
ROOMS = [f"room-{i}" for i in range(12)]


async def test_restart_mid_reconcile_no_duplicate_work_no_error(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    admin = RoomAdmin(nats_client)
    first = start_operator()
    await first.wait_live()
    rooms = {name: Room.build(ns, name, {}) for name in ROOMS}
    kube.apply([room_manifest(name, ns) for name in ROOMS])

    async def some_stream() -> list[str]:
        infos = await nats_client.jsm().streams_info()
        return [i.config.name for i in infos if (i.config.name or "").startswith(f"ROOM_{ns}_")]

    await check_for(60, some_stream, interval=0.01, what="a first stream")
    first.kill(signal.SIGKILL)

    before = {}
    for name, room in rooms.items():
        info = await admin.stream_info(room.stream)
        if info is not None:
            before[name] = info.created
    unfinished = [name for name in ROOMS if not ready_room(kube, ns, name)]
    assert unfinished, "the operator finished every room before it was killed"

    second = start_operator()
    await check_for(90, lambda: all(ready_room(kube, ns, n) for n in ROOMS), what="all Ready")

    for name, room in rooms.items():
        info = await admin.stream_info(room.stream)
        assert info is not None
        if name in before:
            assert info.created == before[name], f"{name}: stream was created again"
        obj = kube.get("chatroom", name, ns)
        for type_ in ("Ready", "SpecApplied"):
            assert condition(obj, type_)["status"] == "True"  # type: ignore[index]
        assert reasons(kube, ns, name).count("StreamCreated") <= 1
        assert [e for e in events_for(kube, ns, name) if e["type"] == "Warning"] == []
    errors = [line for line in second.logs() if line.get("level") in ("error", "critical")]
    assert errors == []
    assert all(not line.get("_not_json") for line in second.logs())
