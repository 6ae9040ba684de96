"""``natter up`` as a person runs it: one command, a whole cluster, clean stops."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.fixtures.client import ChatClient
from tests.fixtures.natter import NatterUp, start_up, wait_up
from tests.fixtures.poll import check_for


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_up_serves_rooms_and_history_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = start_up(data)
    try:
        await wait_up(up)
        state = up.cluster
        assert len(state["nats"]) == 3 and len(state["gateways"]) == 2
        assert state["gateway_url"] == up.url
        async with httpx.AsyncClient(base_url=up.url, timeout=10) as http:
            rooms = (await http.get("/api/rooms")).json()
            assert {"general", "random", "ops"} <= {r["name"] for r in rooms}
            seqs = []
            for i in range(3):
                resp = await http.post("/api/rooms/general/messages", json={"text": f"keep {i}"})
                assert resp.status_code == 201
                seqs.append(resp.json()["seq"])
        pids = [n["pid"] for n in state["nats"]] + [g["pid"] for g in state["gateways"]]
    finally:
        code = up.stop()
    assert code == 0
    assert not [pid for pid in pids if alive(pid)], "natter up left processes behind"
    assert not (data / "cluster.json").exists()

    again = start_up(data, port=up.port)
    try:
        await wait_up(again)
        async with httpx.AsyncClient(base_url=again.url, timeout=10) as http:
            page = (await http.get("/api/rooms/general/messages", params={"after": 0})).json()
        assert [(m["seq"], m["text"]) for m in page["messages"]] == [
            (seq, f"keep {i}") for i, seq in enumerate(seqs)
        ]
    finally:
        assert again.stop() == 0


async def test_up_restarts_a_crashed_node_and_gateway(natter_up: NatterUp) -> None:
    before = natter_up.cluster
    node = before["nats"][1]
    worker = before["gateways"][0]
    os.kill(node["pid"], signal.SIGKILL)
    os.kill(worker["pid"], signal.SIGKILL)

    def replaced() -> bool:
        now = natter_up.cluster
        return now["nats"][1]["pid"] != node["pid"] and now["gateways"][0]["pid"] != worker["pid"]

    await check_for(30, replaced, interval=0.1, what="crashed processes restarted")
    async with httpx.AsyncClient(timeout=2) as http:

        async def rejoined() -> bool:
            resp = await http.get(f"{node['monitor_url']}/healthz")
            return resp.status_code == 200

        await check_for(60, rejoined, interval=0.2, what="restarted node healthy (caught up)")
    # Chat works through whichever worker answers.
    client = await ChatClient(natter_up.ws_url, "grace").connect()
    await client.join("general")
    ack = await client.send("general", "after the crash", "crash-1")
    assert ack["type"] == "ack"
    await client.wait_for(lambda f: f["type"] == "message" and f["id"] == "crash-1")
    await client.close()


async def test_up_with_a_single_nats_node(tmp_path: Path) -> None:
    up = start_up(tmp_path / "solo", "--nats-nodes", "1", gateways=1)
    try:
        await wait_up(up)
        assert len(up.cluster["nats"]) == 1
        async with httpx.AsyncClient(base_url=up.url, timeout=10) as http:
            resp = await http.post("/api/rooms/general/messages", json={"text": "solo"})
            assert resp.status_code == 201 and resp.json()["seq"] >= 1
    finally:
        assert up.stop() == 0
