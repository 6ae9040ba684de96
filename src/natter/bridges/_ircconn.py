"""One IRC connection: CRLF framing over an asyncio stream, with bounded lines."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from natter.bridges import irc

_READ_CHUNK = 65536


class IRCConnection:
    """Lines in, lines out. A line longer than IRC allows is reported and skipped whole."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_overlong: Callable[[bytes], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_overlong = on_overlong
        self._buf = b""
        self._discarding = False

    async def read_lines(self, idle: float) -> list[bytes]:
        """The complete lines of the next chunk (maybe none).

        Raises ``TimeoutError`` after ``idle`` seconds without data and
        ``EOFError`` when the server closed the connection.
        """
        async with asyncio.timeout(idle):
            chunk = await self._reader.read(_READ_CHUNK)
        if not chunk:
            raise EOFError("connection closed by the server")
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        if self._discarding and lines:
            lines, self._discarding = lines[1:], False  # the rest of an overlong line
        if len(self._buf) > irc.MAX_LINE_BYTES + 2:
            self._on_overlong(self._buf[:200])
            self._buf, self._discarding = b"", True
        return lines

    def send(self, command: str, *params: str) -> None:
        """Queue one line; ``ValueError`` if it could not be sent safely."""
        self.send_line(irc.format_line(command, *params))

    def send_line(self, line: str) -> None:
        if "\r" in line or "\n" in line:
            raise ValueError("an IRC line cannot contain CR or LF")
        self._writer.write(line.encode() + b"\r\n")

    async def drain(self) -> None:
        await self._writer.drain()

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self._writer

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(2.0):
                await self._writer.wait_closed()
