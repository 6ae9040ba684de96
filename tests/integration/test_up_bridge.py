"""``natter up --twitch CHANNEL:ROOM`` runs a supervised bridge into the room."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fixtures.fake_twitch import FakeTwitch
from tests.fixtures.natter import start_up, wait_up
from tests.fixtures.poll import check_for


async def test_up_runs_a_twitch_bridge_into_a_room(tmp_path: Path) -> None:
    fake = await FakeTwitch().start()
    up = start_up(
        tmp_path / "data",
        "--twitch",
        "natterdemo:random",
        gateways=1,
        env={"NATTER_TWITCH_SERVER": fake.address, "NATTER_TWITCH_TLS": "false"},
    )
    try:
        await wait_up(up)
        assert up.cluster["bridges"][0]["args"][:2] == ["bridge", "twitch"]
        await fake.wait_joined(within=30)
        await fake.privmsg(
            "natterdemo", "ronni", "hello from twitch", msg_id="tw-1", display_name="Ronni"
        )
        async with httpx.AsyncClient(base_url=up.url, timeout=5) as http:

            async def bridged() -> list[dict[str, object]]:
                page = (await http.get("/api/rooms/random/messages")).json()
                return [m for m in page["messages"] if m.get("source") == "twitch"]

            found = await check_for(30, bridged, interval=0.2, what="bridged message stored")
        assert found[0]["user"] == "Ronni" and found[0]["text"] == "hello from twitch"
        assert found[0]["id"] == "tw-1"
    finally:
        assert up.stop() == 0
        await fake.close()
