"""Done-when: apply a ChatRoom, the operator makes it, and people chat in it."""

from __future__ import annotations

import pytest

from tests.fixtures.client import ChatClient
from tests.fixtures.kube import KubeAPI
from tests.fixtures.natter import GatewayProcs
from tests.fixtures.poll import check_for
from tests.operator.conftest import OperatorFactory, ready_room, room_manifest

pytestmark = pytest.mark.slow


async def test_chat_in_a_room_the_operator_made(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    start_operator: OperatorFactory,
    gateways: GatewayProcs,
) -> None:
    kube, ns = chatroom_crd, kube_namespace
    start_operator()
    kube.apply(room_manifest("hangout", ns, displayName="Hangout", replicas=3))
    await check_for(60, lambda: ready_room(kube, ns, "hangout"), what="hangout Ready")

    port = gateways.start(NATTER_NAMESPACE=ns)
    await gateways.wait_ready(port)
    url = f"ws://127.0.0.1:{port}/ws"
    alice = await ChatClient(url, "alice").connect()
    bob = await ChatClient(url, "bob").connect()
    try:
        for client in (alice, bob):
            joined = await client.join("hangout")
            assert joined["type"] == "joined", joined
        ack = await alice.send("hangout", "hello from a ChatRoom", "m-1")
        assert ack["type"] == "ack" and ack["seq"] == 1
        (message,) = await bob.wait_messages("hangout", 1)
        assert message["user"] == "alice" and message["text"] == "hello from a ChatRoom"
    finally:
        await alice.close()
        await bob.close()

    def counted() -> bool:
        stream = (kube.get("chatroom", "hangout", ns) or {}).get("status", {}).get("stream", {})
        return bool(stream.get("messages") == 1 and stream.get("lastSeq") == 1)

    await check_for(30, counted, what="status counts the message")
