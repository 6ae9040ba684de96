"""NATS away and specs JetStream cannot apply: conditions that say so, and recovery."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS

from natter.bus import RoomAdmin
from natter.embedded import NatsCluster
from natter.reconcile import reconcile_room
from natter.rooms import Room
from tests.fixtures.kube import KubeAPI
from tests.fixtures.poll import check_for
from tests.operator.conftest import (
    OperatorFactory,
    condition,
    ready_room,
    reasons,
    room_manifest,
)

pytestmark = pytest.mark.slow


async def test_nats_unavailable_then_recovers(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_cluster: NatsCluster,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    for node in nats_cluster.nodes:
        nats_cluster.kill(node.name)
    operator = start_operator()
    live = await operator.wait_live()
    assert live.get("nats_connected") is False

    kube.apply(room_manifest("general", ns))

    def unavailable() -> bool:
        ready = condition(kube.get("chatroom", "general", ns), "Ready")
        return bool(ready and ready["status"] == "False" and ready["reason"] == "NatsUnavailable")

    await check_for(30, unavailable, what="Ready=False NatsUnavailable")
    await check_for(10, lambda: "NatsUnavailable" in reasons(kube, ns, "general"), what="event")
    row = kube.kubectl("get", "room", "general", "-n", ns, "--no-headers").stdout.split()
    assert row[1] == "False"

    for node in nats_cluster.nodes:
        node.start()
    await nats_cluster.wait_ready(60)
    await check_for(60, lambda: ready_room(kube, ns, "general"), what="Ready after NATS is back")
    assert reasons(kube, ns, "general").count("NatsUnavailable") == 1
    assert (await operator.wait_live()).get("nats_connected") is True


async def test_storage_conflict_leaves_stream_untouched(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    admin = RoomAdmin(nats_client)
    retention = {"maxMessages": 10, "maxBytes": "16Mi"}
    legacy = Room.build(ns, "legacy", {"storage": "memory", "retention": retention})
    await reconcile_room(admin, legacy)
    start_operator()

    kube.apply(room_manifest("legacy", ns, retention={**retention, "maxMessages": 1000}))

    def conflict() -> dict[str, object] | None:
        applied = condition(kube.get("chatroom", "legacy", ns), "SpecApplied")
        return applied if applied and applied["reason"] == "SpecConflict" else None

    applied = await check_for(60, conflict, what="SpecApplied=False SpecConflict")
    assert applied["status"] == "False"
    assert "storage" in str(applied["message"]) and "unchanged" in str(applied["message"])
    obj = kube.get("chatroom", "legacy", ns)
    assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
    assert obj["status"]["stream"]["name"] == legacy.stream  # type: ignore[index]
    info = await admin.stream_info(legacy.stream)
    assert info is not None
    assert info.config.storage == "memory"
    assert info.config.max_msgs == 10
    await check_for(10, lambda: "SpecConflict" in reasons(kube, ns, "legacy"), what="event")
