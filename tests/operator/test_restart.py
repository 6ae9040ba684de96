"""Killing the operator mid-reconcile: the next one finishes the job without
redoing it and without reporting an error."""

from __future__ import annotations

import signal

import pytest
from nats.aio.client import Client as NATS

from natter.bus import RoomAdmin
from natter.embedded import NatsCluster
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
ROOMS = [f"room-{i}" for i in range(8)]
FINALIZER = "natter.dev/stream-cleanup"


async def test_restart_mid_reconcile_no_duplicate_work_no_error(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_cluster: NatsCluster,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    admin = RoomAdmin(nats_client)
    first = start_operator()
    kube.apply(room_manifest("warmup", ns))  # the operator connects to NATS
    await check_for(60, lambda: ready_room(kube, ns, "warmup"), what="warmup Ready")

    # Freeze NATS so the operator's reconciles hang mid-way, then kill it while they
    # do: its requests may still be executed once NATS thaws (a half-done reconcile).
    for node in nats_cluster.nodes:
        nats_cluster.pause(node.name)
    try:
        kube.apply([room_manifest(name, ns) for name in ROOMS])

        def all_taken() -> bool:  # kopf adds its finalizer before calling the handler
            rooms = [kube.get("chatroom", name, ns) or {} for name in ROOMS]
            return all(FINALIZER in r.get("metadata", {}).get("finalizers", []) for r in rooms)

        await check_for(4, all_taken, what="the operator has taken every room")
        first.kill(signal.SIGKILL)
    finally:
        for node in nats_cluster.nodes:
            nats_cluster.resume(node.name)
    await nats_cluster.wait_ready()
    assert not any(ready_room(kube, ns, name) for name in ROOMS)

    rooms = {name: Room.build(ns, name, {}) for name in ROOMS}
    before = {}
    for name, room in rooms.items():
        info = await admin.stream_info(room.stream)
        if info is not None:
            before[name] = info.created

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
    assert [line for line in second.logs() if line.get("level") in ("error", "critical")] == []
    assert all(not line.get("_not_json") for line in second.logs())
