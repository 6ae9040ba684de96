"""Abuse limits, Origin checks and security headers through a real gateway process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import websockets

from natter.gateway.security import CSP
from tests.fixtures.client import ChatClient
from tests.fixtures.nats import make_room
from tests.fixtures.natter import GatewayProcs


async def start(gateways: GatewayProcs, **env: str) -> int:
    port = gateways.start(**env)
    await gateways.wait_ready(port)
    return port


async def test_connection_room_and_frame_limits(nats_client: Any, gateways: GatewayProcs) -> None:
    for name in ("one", "two"):
        await make_room(nats_client, name)
    port = await start(
        gateways,
        NATTER_MAX_CONNECTIONS_PER_IP="2",
        NATTER_MAX_ROOMS_PER_CONNECTION="1",
        NATTER_MAX_FRAME_BYTES="1024",
    )
    url = f"ws://127.0.0.1:{port}/ws"
    first = await ChatClient(url, "a").connect()
    second = await ChatClient(url, "b").connect()
    third = await ChatClient(url, "c").connect(hello=False)
    with pytest.raises(ConnectionError):
        await third.wait_for(lambda f: False, timeout=10)
    assert third.closed == (1013, "too many connections from your address")
    await second.close()
    again = await ChatClient(url, "b").connect()  # a slot was freed
    assert again.welcome is not None

    assert (await first.join("one"))["type"] == "joined"
    refused = await first.join("two")
    assert refused["type"] == "error" and refused["code"] == "bad_request"
    assert "at most 1 rooms" in refused["message"]

    big = await first.request(
        {"type": "send", "room": "one", "id": "big", "text": "x" * 2000},
        lambda f: f["type"] == "error",
    )
    assert big["code"] == "too_large"
    assert (await first.send("one", "still open", "ok"))["type"] == "ack"
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'natter_gateway_refusals_total{reason="connections_per_ip"} 1.0' in metrics
    assert 'natter_gateway_refusals_total{reason="max_rooms"} 1.0' in metrics
    for client in (first, again):
        await client.close()


async def test_cross_site_sockets_and_posts_are_refused(
    nats_client: Any, gateways: GatewayProcs
) -> None:
    await make_room(nats_client, "lobby")
    port = await start(gateways, NATTER_ALLOWED_ORIGINS="https://chat.example.com")
    url = f"ws://127.0.0.1:{port}/ws"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    for origin in (f"http://127.0.0.1:{port}", "https://chat.example.com"):
        ws = await websockets.connect(url, origin=origin)  # type: ignore[arg-type]
        await ws.send('{"type": "hello", "user": "ok"}')
        assert "welcome" in await ws.recv()
        await ws.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        resp = await http.post(
            "/api/rooms/lobby/messages",
            json={"text": "csrf"},
            headers={"Origin": "https://evil.example"},
        )
        assert resp.status_code == 403 and resp.json()["code"] == "forbidden"
        page = (await http.get("/api/rooms/lobby/messages")).json()
        assert page["messages"] == []
        resp = await http.post(
            "/api/rooms/lobby/messages",
            content=b"x" * (3 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 413


async def test_security_headers_and_csp(nats_client: Any, gateways: GatewayProcs) -> None:
    port = await start(gateways)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        page = await http.get("/")
        api = await http.get("/api/rooms")
    for resp in (page, api):
        assert resp.headers["content-security-policy"] == CSP
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert api.headers["cache-control"] == "no-store"
    assert page.headers["cache-control"] == "no-cache"
