"""The operator needs only operator/rbac-rules.yaml (the chart's rules), not admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from natter.bus import RoomAdmin
from natter.rooms import Room
from tests.fixtures.kube import KubeAPI
from tests.fixtures.poll import check_for
from tests.operator.conftest import OperatorFactory, ready_room, room_manifest

pytestmark = pytest.mark.slow


def test_service_account_is_not_admin(
    chatroom_crd: KubeAPI, kube_namespace: str, operator_kubeconfig: Path
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    allowed = [
        ("watch", "chatrooms.natter.dev"),
        ("patch", "chatrooms.natter.dev/status"),
        ("create", "events"),
    ]
    denied = [
        ("create", "chatrooms.natter.dev"),
        ("delete", "chatrooms.natter.dev"),
        ("get", "secrets"),
        ("create", "pods"),
        ("update", "customresourcedefinitions"),
        ("*", "*"),
    ]
    for verb, resource in allowed:
        assert kube.can_i(verb, resource, kubeconfig=operator_kubeconfig, namespace=ns)
    for verb, resource in denied:
        assert not kube.can_i(verb, resource, kubeconfig=operator_kubeconfig, namespace=ns)


async def test_all_namespaces_operator_under_its_rules(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    nats_client: NATS,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    operator = start_operator(all_namespaces=True)
    await operator.wait_live()
    kube.apply(room_manifest("lobby", ns, deletionPolicy="Delete", replicas=1))
    await check_for(60, lambda: ready_room(kube, ns, "lobby"), what="lobby Ready")
    room = Room.build(ns, "lobby", {"replicas": 1})
    admin = RoomAdmin(nats_client)
    assert await admin.stream_info(room.stream) is not None

    kube.kubectl("delete", "chatroom", "lobby", "-n", ns, "--timeout=60s")
    assert await admin.stream_info(room.stream) is None
    problems = [
        line
        for line in operator.logs()
        if line.get("level") in ("warning", "error", "critical")
        and ("ermission" in str(line.get("event")) or "403" in str(line.get("event")))
    ]
    assert problems == []
