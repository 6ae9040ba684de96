"""The WebSocket protocol of DESIGN.md: parsing client frames, building server frames.

Parsing is strict and total: any input either becomes one of the typed frames
below or raises :class:`natter.errors.BadRequest` with a message that says what
is wrong. Server frames are built as JSON text once and reused for every socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from natter.errors import BadRequest, NatterError

ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
USER_RE = re.compile(r"^[\w.@ -]{1,32}$")
ROOM_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_TEXT_CHARS = 1_048_576


@dataclass(frozen=True, slots=True)
class Hello:
    user: str | None
    token: str | None


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    since: int | None
    history: int | None


@dataclass(frozen=True, slots=True)
class Send:
    room: str
    id: str | None
    text: str


@dataclass(frozen=True, slots=True)
class History:
    room: str
    before: int | None
    limit: int | None


@dataclass(frozen=True, slots=True)
class Leave:
    room: str


@dataclass(frozen=True, slots=True)
class Typing:
    room: str


Frame = Hello | Join | Send | History | Leave | Typing


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadRequest(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string")
    return value


def _int(data: dict[str, Any], key: str, *, minimum: int = 0) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{key}' must be an integer")
    if value < minimum:
        raise BadRequest(f"'{key}' must be at least {minimum}")
    return value


def _room(data: dict[str, Any]) -> str:
    room = _str(data, "room")
    assert room is not None
    if not ROOM_RE.fullmatch(room):
        raise BadRequest("'room' must be a room name (lowercase letters, digits and '-')")
    return room


def valid_user(user: str) -> str:
    user = user.strip()
    if not USER_RE.fullmatch(user):
        raise BadRequest("user names are 1-32 letters, digits, spaces or . _ @ -")
    return user


def valid_id(msg_id: str) -> str:
    if not ID_RE.fullmatch(msg_id):
        raise BadRequest("'id' must be 1-64 characters of letters, digits and _ . : @ -")
    return msg_id


def parse(raw: str | bytes) -> Frame:
    """One client frame from a WebSocket text message."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"frame is not JSON: {exc.args[0] if exc.args else exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("a frame must be a JSON object with a 'type'")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise BadRequest("a frame needs a string 'type'")
    ref = data.get("id") if isinstance(data.get("id"), str) else None
    try:
        return _parse(kind, data)
    except BadRequest as exc:
        exc.ref = exc.ref or ref
        raise


def _parse(kind: str, data: dict[str, Any]) -> Frame:
    if kind == "hello":
        user = _str(data, "user", required=False)
        token = _str(data, "token", required=False)
        if user is None and token is None:
            raise BadRequest("hello needs 'user' (open mode) or 'token'")
        return Hello(valid_user(user) if user is not None else None, token)
    if kind == "join":
        history = _int(data, "history")
        return Join(_room(data), _int(data, "since"), history)
    if kind == "send":
        text = _str(data, "text")
        assert text is not None
        if not text.strip():
            raise BadRequest("'text' must not be empty")
        msg_id = _str(data, "id", required=False)
        return Send(_room(data), valid_id(msg_id) if msg_id is not None else None, text)
    if kind == "history":
        return History(_room(data), _int(data, "before", minimum=1), _int(data, "limit", minimum=1))
    if kind == "leave":
        return Leave(_room(data))
    if kind == "typing":
        return Typing(_room(data))
    raise BadRequest(f"unknown frame type {kind!r}")


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stored_message(msg_id: str, user: str, text: str, source: str | None = None) -> bytes:
    """The stream payload of a chat message."""
    body: dict[str, Any] = {"id": msg_id, "user": user, "text": text, "ts": now_rfc3339()}
    if source:
        body["source"] = source
    return orjson.dumps(body)


_MESSAGE_FIELDS = ("id", "user", "text", "ts", "source", "action")


def message_fields(room: str, seq: int, payload: bytes) -> dict[str, Any]:
    """A stored payload as the fields of a ``message`` frame (tolerant of bad payloads)."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        data = {"id": f"seq-{seq}", "user": "?", "text": "", "ts": ""}
    frame: dict[str, Any] = {"type": "message", "room": room, "seq": seq}
    for key in _MESSAGE_FIELDS:
        if key in data:
            frame[key] = data[key]
    return frame


def message_frame(room: str, seq: int, payload: bytes) -> str:
    return encode(message_fields(room, seq, payload))


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def error_frame(exc: NatterError) -> str:
    frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
    if exc.ref:
        frame["ref"] = exc.ref
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return encode(frame)


def batch(frames: list[str]) -> str:
    """One WebSocket message for frames in order: the frame itself, or a JSON array."""
    return frames[0] if len(frames) == 1 else "[" + ",".join(frames) + "]"
