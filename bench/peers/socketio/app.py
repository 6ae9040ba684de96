"""Benchmark peer: the chat a Python team would build on python-socketio + Redis.

Rooms are Socket.IO rooms fanned out across processes by ``AsyncRedisManager``;
each room's messages are kept in a Redis list (its index is the message's seq),
so ``join`` with ``since`` replays from Redis before live delivery.

Run: ``BENCH_REDIS_URL=redis://127.0.0.1:PORT uvicorn bench.peers.socketio.app:app``.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
import socketio

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
HISTORY_CHUNK = 500

manager = socketio.AsyncRedisManager(REDIS_URL)
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins="*")
store = aioredis.from_url(REDIS_URL)
app = socketio.ASGIApp(sio)


def key(room: str) -> str:
    return f"sio:room:{room}"


@sio.event
async def connect(sid: str, environ: dict[str, Any]) -> None:
    await sio.save_session(sid, {"user": f"sio-{sid[:8]}"})


@sio.event
async def join(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    room = str(data["room"])
    since = int(data.get("since", -1))
    await sio.enter_room(sid, room)
    if since >= 0:
        start = since
        while True:
            raw = await store.lrange(key(room), start, start + HISTORY_CHUNK - 1)
            if not raw:
                break
            batch = [
                {**orjson.loads(item), "room": room, "seq": start + i + 1}
                for i, item in enumerate(raw)
            ]
            await sio.emit("messages", batch, to=sid)
            start += len(raw)
    return {"room": room, "last_seq": await store.llen(key(room))}


@sio.event
async def send(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    session = await sio.get_session(sid)
    room = str(data["room"])
    body = {
        "id": str(data.get("id") or uuid.uuid4().hex),
        "user": session["user"],
        "text": str(data["text"]),
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    seq = await store.rpush(key(room), orjson.dumps(body))
    await sio.emit("message", {**body, "room": room, "seq": seq}, room=room)
    return {"id": body["id"], "seq": seq}
