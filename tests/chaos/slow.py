"""A WebSocket client that joins rooms and then never reads again (scenario 7).

Its socket has a 4 KiB receive buffer, and the websockets library stops reading
from the transport once ``max_queue`` frames wait unread, so the gateway soon
sees a peer whose TCP window is shut: what a frozen browser tab or a phone that
lost its radio looks like from the server.
"""

from __future__ import annotations

import json
import socket
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import websockets

RECEIVE_BUFFER = 4096


class SlowReader:
    def __init__(self, url: str, rooms: list[str], user: str = "sloth") -> None:
        self.url = url
        self.rooms = rooms
        self.user = user
        self.ws: Any = None

    async def __aenter__(self) -> SlowReader:
        parts = urlsplit(self.url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setblocking(False)
        sock.settimeout(10)
        sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        sock.setblocking(False)
        self.ws = await websockets.connect(self.url, sock=sock, max_queue=4, open_timeout=10)
        await self.ws.send(json.dumps({"type": "hello", "user": self.user}))
        for room in self.rooms:
            await self.ws.send(json.dumps({"type": "join", "room": room, "since": 0}))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ws is not None:
            self.ws.transport.abort()
