"""``natter up --auth jwt --users FILE``: logins, tokens, and NATS locked down per component."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest

from tests.fixtures.client import ChatClient
from tests.fixtures.natter import start_up, wait_up


async def test_up_in_jwt_mode(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "natter",
            "users",
            "add",
            "alice",
            "--file",
            str(users),
            "--password-stdin",
        ],
        input=b"wonderland\n",
        check=True,
    )
    data = tmp_path / "data"
    up = start_up(data, "--auth", "jwt", "--users", str(users), gateways=1)
    try:
        await wait_up(up)
        async with httpx.AsyncClient(base_url=up.url, timeout=10) as http:
            assert (await http.get("/api/rooms")).status_code == 401
            bad = await http.post("/api/login", json={"user": "alice", "password": "nope"})
            assert bad.status_code == 401
            resp = await http.post("/api/login", json={"user": "alice", "password": "wonderland"})
            assert resp.status_code == 200
            token = resp.json()["token"]
            rooms = await http.get("/api/rooms", headers={"Authorization": f"Bearer {token}"})
            assert {"general", "random", "ops"} <= {r["name"] for r in rooms.json()}
        client = await ChatClient(up.ws_url, "x").connect(hello=False)
        welcome = await client.request(
            {"type": "hello", "token": token}, lambda f: f["type"] in ("welcome", "error")
        )
        assert welcome == {**welcome, "type": "welcome", "user": "alice"}
        await client.join("general")
        assert (await client.send("general", "hi", "u1"))["type"] == "ack"
        await client.close()

        # NATS itself refuses anonymous clients; the gateway runs as the gateway user.
        creds = json.loads((data / "nats-credentials.json").read_text())
        assert (data / "nats-credentials.json").stat().st_mode & 0o077 == 0
        assert {"operator", "gateway", "analytics"} <= set(creds)
        url = up.cluster["nats"][0]["client_url"]
        with pytest.raises(nats.errors.Error):
            await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        users: set[str | None] = set()
        async with httpx.AsyncClient(timeout=10) as http:
            for node in up.cluster["nats"]:
                conns = (await http.get(f"{node['monitor_url']}/connz", params={"auth": 1})).json()
                users |= {c.get("authorized_user") for c in conns.get("connections") or []}
        assert "gateway" in users and None not in users
    finally:
        assert up.stop() == 0


async def test_up_defaults_to_open_mode(natter_up: object) -> None:
    from tests.fixtures.natter import NatterUp

    assert isinstance(natter_up, NatterUp)
    async with httpx.AsyncClient(base_url=natter_up.url, timeout=10) as http:
        assert (await http.get("/api/auth")).json()["mode"] == "open"
        assert (await http.get("/api/rooms")).status_code == 200
