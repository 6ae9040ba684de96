"""SIGKILL a room's stream leader while a client sends: nothing acked is lost."""

from __future__ import annotations

import asyncio
import itertools
import time

from natter import bus
from natter.embedded import NatsCluster
from natter.protocol import message_fields
from tests.fixtures.client import ChatClient
from tests.fixtures.nats import make_room
from tests.fixtures.natter import GatewayProcs
from tests.fixtures.poll import check_for

TOTAL = 500
WINDOW = 16


async def send_with_retry(
    client: ChatClient, room: str, text: str, msg_id: str
) -> dict[str, object]:
    """Send until acked, retrying with the same id (what a real client does)."""
    while True:
        try:
            answer = await client.send(room, text, msg_id, timeout=15)
        except TimeoutError:
            continue
        if answer["type"] == "ack":
            return answer
        assert answer["code"] in ("unavailable", "rate_limited"), answer
        if answer["code"] == "rate_limited":
            await asyncio.sleep(float(answer.get("retry_after", 0.1)))  # type: ignore[arg-type]


async def test_sigkill_stream_leader_while_sending_loses_nothing(
    nats_cluster: NatsCluster, nats_client: object, gateways: GatewayProcs
) -> None:
    room = await make_room(nats_client, "failover")  # type: ignore[arg-type]
    ports = [gateways.start(), gateways.start()]
    await asyncio.gather(*(gateways.wait_ready(p) for p in ports))
    writer = await ChatClient(f"ws://127.0.0.1:{ports[0]}/ws", "writer").connect()
    reader = await ChatClient(f"ws://127.0.0.1:{ports[1]}/ws", "reader").connect()
    await reader.join("failover")

    acks: dict[str, int] = {}
    ack_times: list[float] = []
    killed = asyncio.Event()
    sem = asyncio.Semaphore(WINDOW)

    async def one(i: int) -> None:
        async with sem:
            answer = await send_with_retry(writer, "failover", f"m{i}", f"id-{i}")
            acks[f"id-{i}"] = int(answer["seq"])  # type: ignore[call-overload]
            ack_times.append(time.monotonic())

    async def killer() -> str:
        await check_for(60, lambda: len(acks) >= 100, interval=0.01, what="100 acks")
        leader = await nats_cluster.stream_leader(room.stream)
        assert leader is not None
        nats_cluster.kill(leader)
        killed.set()
        return leader

    started = time.monotonic()
    _, victim = await asyncio.gather(asyncio.gather(*(one(i) for i in range(TOTAL))), killer())
    elapsed = time.monotonic() - started
    assert killed.is_set()

    # Every acked message is stored exactly once, at the seq it was acked with.
    assert len(acks) == TOTAL
    assert sorted(acks.values()) == list(range(1, TOTAL + 1))
    stored = await bus.RoomBus(nats_client).read(room, 1, TOTAL + 10)  # type: ignore[arg-type]
    stored_ids = {seq: message_fields("failover", seq, data)["id"] for seq, data in stored}
    assert len(stored) == TOTAL
    assert all(stored_ids[seq] == msg_id for msg_id, seq in acks.items())

    # The joined reader got every message once, in seq order.
    got = await reader.wait_messages("failover", TOTAL, timeout=60)
    assert [m["seq"] for m in got] == list(range(1, TOTAL + 1))
    assert len(reader.messages("failover")) == TOTAL

    ack_times.sort()
    gap = max(b - a for a, b in itertools.pairwise(ack_times))
    print(
        f"\nfailover: killed {victim}; {TOTAL} acked in {elapsed:.2f}s; "
        f"longest time without acks {gap:.2f}s"
    )
    await writer.close()
    await reader.close()
