"""The chat path through real gateway processes on a real 3-node cluster."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from natter.embedded import NatsCluster
from tests.fixtures.client import ChatClient
from tests.fixtures.nats import make_room
from tests.fixtures.natter import GatewayProcs


async def two_gateways(gateways: GatewayProcs) -> list[str]:
    ports = [gateways.start(), gateways.start()]
    await asyncio.gather(*(gateways.wait_ready(p) for p in ports))
    return [f"ws://127.0.0.1:{p}/ws" for p in ports]


async def test_clients_on_different_gateways_agree_on_order(
    nats_client: object, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "lobby")  # type: ignore[arg-type]
    url_a, url_b = await two_gateways(gateways)
    alice = await ChatClient(url_a, "alice").connect()
    bob = await ChatClient(url_b, "bob").connect()
    assert alice.welcome and bob.welcome and alice.welcome["node"] != bob.welcome["node"]
    for client in (alice, bob):
        assert (await client.join("lobby"))["type"] == "joined"

    async def burst(client: ChatClient) -> list[dict[str, object]]:
        return await asyncio.gather(
            *(client.send("lobby", f"{client.user} {i}", f"{client.user}-{i}") for i in range(20))
        )

    acks = [a for acks in await asyncio.gather(burst(alice), burst(bob)) for a in acks]
    assert all(a["type"] == "ack" for a in acks)
    assert sorted(a["seq"] for a in acks) == list(range(1, 41))
    seen_a = await alice.wait_messages("lobby", 40)
    seen_b = await bob.wait_messages("lobby", 40)
    order_a = [(m["seq"], m["id"]) for m in seen_a]
    assert order_a == [(m["seq"], m["id"]) for m in seen_b]
    assert [seq for seq, _ in order_a] == list(range(1, 41))
    by_id = {a["id"]: a["seq"] for a in acks}
    assert all(by_id[msg_id] == seq for seq, msg_id in order_a)
    # The gateway, not the client, sets the user.
    assert {m["user"] for m in seen_a} == {"alice", "bob"}
    await alice.close()
    await bob.close()


async def test_reconnect_with_since_gets_exactly_the_missed_messages(
    nats_client: object, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "resume")  # type: ignore[arg-type]
    url_a, url_b = await two_gateways(gateways)
    writer = await ChatClient(url_a, "writer").connect()
    reader = await ChatClient(url_b, "reader").connect()
    await reader.join("resume")
    for i in range(5):
        await writer.send("resume", f"before {i}", f"b{i}")
    await reader.wait_messages("resume", 5)
    last_seen = reader.seqs("resume")[-1]
    await reader.close()
    for i in range(7):
        await writer.send("resume", f"while away {i}", f"w{i}")
    back = await ChatClient(url_a, "reader").connect()
    joined = await back.join("resume", since=last_seen)
    assert joined["last_seq"] == 12
    await back.wait_messages("resume", 7)
    # Live messages after the replay arrive once, in order, with no gap.
    sends = [writer.send("resume", f"after {i}", f"a{i}") for i in range(5)]
    await asyncio.gather(*sends)
    messages = await back.wait_messages("resume", 12)
    assert [m["seq"] for m in messages] == list(range(6, 18))
    assert [m["text"] for m in messages[:7]] == [f"while away {i}" for i in range(7)]


async def test_join_replays_history_and_hands_over_to_live_without_gap(
    nats_client: object, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "busy")  # type: ignore[arg-type]
    url_a, url_b = await two_gateways(gateways)
    writer = await ChatClient(url_a, "writer").connect()
    for i in range(60):
        await writer.send_frame({"type": "send", "room": "busy", "id": f"p{i}", "text": str(i)})
    await writer.wait_for(lambda f: f["type"] == "ack" and f["id"] == "p59", timeout=20)

    # Publishing continues while readers join with since=0 and with the default history.
    more = asyncio.gather(*(writer.send("busy", f"live {i}", f"l{i}") for i in range(40)))
    full = await ChatClient(url_b, "full").connect()
    latest = await ChatClient(url_b, "latest").connect()
    await full.join("busy", since=0)
    await latest.join("busy", history=10)
    await more
    got = await full.wait_messages("busy", 100)
    assert [m["seq"] for m in got] == list(range(1, 101))
    tail = await latest.wait_messages("busy", 1)
    await latest.wait_for(lambda f: f["type"] == "message" and f["seq"] == 100)
    seqs = latest.seqs("busy")
    assert seqs == list(range(seqs[0], 101)) and len(seqs) >= 10 and tail


async def test_a_retried_id_gets_the_original_seq_and_is_stored_once(
    nats_client: object, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "dedupe")  # type: ignore[arg-type]
    url, _ = await two_gateways(gateways)
    client = await ChatClient(url, "carol").connect()
    first = await client.send("dedupe", "once", "same-id")
    again = await client.send("dedupe", "once", "same-id")
    assert first["type"] == again["type"] == "ack"
    assert first["seq"] == again["seq"]
    other = await client.send("dedupe", "next", "other-id")
    assert other["seq"] == first["seq"] + 1
    # Another user cannot claim carol's id.
    mallory = await ChatClient(url, "mallory").connect()
    stolen = await mallory.send("dedupe", "mine", "same-id")
    assert stolen["type"] == "error" and stolen["code"] == "bad_request"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "bad_request"),
        ('["a", "list"]', "bad_request"),
        ('{"type": "shout", "room": "errs"}', "bad_request"),
        ('{"type": "join"}', "bad_request"),
        ('{"type": "join", "room": "Not A Room!"}', "bad_request"),
        ('{"type": "join", "room": "errs", "since": -1}', "bad_request"),
        ('{"type": "send", "room": "errs"}', "bad_request"),
        ('{"type": "send", "room": "errs", "text": "  "}', "bad_request"),
        ('{"type": "join", "room": "no-such-room"}', "unknown_room"),
        ('{"type": "send", "room": "no-such-room", "text": "hi"}', "unknown_room"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    nats_client: object, gateways: GatewayProcs, frame: str, code: str
) -> None:
    await make_room(nats_client, "errs")  # type: ignore[arg-type]
    port = gateways.start()
    await gateways.wait_ready(port)
    client = await ChatClient(f"ws://127.0.0.1:{port}/ws", "dave").connect()
    error = await client.request(frame, lambda f: f["type"] == "error")  # type: ignore[arg-type]
    assert error["code"] == code and error["message"]
    ack = await client.send("errs", "still here", "ok-1")
    assert ack["type"] == "ack"


async def test_send_before_hello_and_oversize_text_and_frames(
    nats_client: object, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "limits", maxMessageSize=100)  # type: ignore[arg-type]
    port = gateways.start(NATTER_MAX_FRAME_BYTES="2000")
    await gateways.wait_ready(port)
    client = await ChatClient(f"ws://127.0.0.1:{port}/ws", "erin").connect(hello=False)
    early = await client.request(
        {"type": "send", "room": "limits", "id": "e1", "text": "hi"}, lambda f: f["type"] == "error"
    )
    assert early["code"] == "bad_request" and "hello" in early["message"]
    await client.request({"type": "hello", "user": "erin"}, lambda f: f["type"] == "welcome")
    big = await client.send("limits", "x" * 101, "big-1")
    assert big["type"] == "error" and big["code"] == "too_large" and big["ref"] == "big-1"
    fits = await client.send("limits", "x" * 100, "fits-1")
    assert fits["type"] == "ack"
    huge = await client.request(
        {"type": "send", "room": "limits", "id": "huge", "text": "y" * 5000},
        lambda f: f["type"] == "error",
    )
    assert huge["code"] == "too_large"
    assert (await client.send("limits", "after", "after-1"))["type"] == "ack"
    # Protocol abuse (a frame far beyond any limit) closes the socket with 1009.
    await client.send_frame("z" * (1 << 21))
    await asyncio.wait_for(client._reader, 10)  # type: ignore[arg-type]
    assert client.closed is not None and client.closed[0] == 1009


async def test_nats_unavailable_answers_unavailable_and_recovers(
    nats_cluster: NatsCluster, nats_client: object, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "outage")  # type: ignore[arg-type]
    port = gateways.start(NATTER_PUBLISH_TIMEOUT="1")
    await gateways.wait_ready(port)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
    client = await ChatClient(f"ws://127.0.0.1:{port}/ws", "frank").connect()
    await client.join("outage")
    assert (await client.send("outage", "up", "o1"))["type"] == "ack"
    for node in nats_cluster.nodes:
        nats_cluster.kill(node.name)

    async def not_ready() -> bool:
        return (await http.get("/readyz")).status_code == 503

    from tests.fixtures.poll import check_for

    await check_for(15, not_ready, what="readyz 503")
    down = await client.send("outage", "down", "o2")
    assert down["type"] == "error" and down["code"] == "unavailable" and down["ref"] == "o2"
    problem = await http.post("/api/rooms/outage/messages", json={"text": "down"})
    assert problem.status_code == 503 and problem.json()["code"] == "unavailable"
    assert (await http.get("/healthz")).status_code == 200
    for node in nats_cluster.nodes:
        node.start()

    async def ready() -> bool:
        return (await http.get("/readyz")).status_code == 200

    await check_for(60, ready, what="readyz 200 again")

    # The unacked message is retried with its id; the socket never closed.
    async def resent() -> dict[str, object] | None:
        # A real client resends with the same id until acked; the stream may still be
        # electing a leader just after readiness returns.
        answer = await client.send("outage", "down", "o2", timeout=10)
        return answer if answer["type"] == "ack" else None

    retry = await check_for(60, resent, interval=0.5, what="resend acked")
    assert retry["seq"] == 2
    await client.wait_for(lambda f: f["type"] == "message" and f["seq"] == 2, timeout=30)
    await http.aclose()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_count_connections_frames_and_publish_latency(
    nats_client: object, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "metered")  # type: ignore[arg-type]
    port = gateways.start()
    await gateways.wait_ready(port)
    client = await ChatClient(f"ws://127.0.0.1:{port}/ws", "ivy").connect()
    await client.join("metered")
    await client.send("metered", "counted", "c1")
    await client.wait_for(lambda f: f["type"] == "message")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        text = (await http.get("/metrics")).text
    assert metric(text, "natter_gateway_open_connections") == 1
    assert metric(text, 'natter_gateway_frames_in_total{type="send"}') == 1
    assert metric(text, "natter_gateway_publish_seconds_count") == 1
    assert metric(text, "natter_gateway_room_feeds") == 1
    assert metric(text, "natter_gateway_ready") == 1
    assert metric(text, "natter_gateway_frames_out_total") >= 4  # welcome, joined, ack, message
    await client.close()
