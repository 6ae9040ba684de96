"""Twitch-specific pieces of the bridge that do no I/O: settings, names, the
mapping from a ``PRIVMSG`` to a stored message, and the relay's outgoing line."""

from __future__ import annotations

import random
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from natter.bridges import irc

DEFAULT_SERVER = "irc.chat.twitch.tv:6697"
TLS_PORT = 6697
PLAIN_PORT = 6667
#: Twitch drops chat messages longer than this many characters.
TWITCH_MAX_TEXT = 500
CAPABILITIES = "twitch.tv/tags twitch.tv/commands"
#: The password anonymous (``justinfan``) logins traditionally send; Twitch ignores it.
ANONYMOUS_PASS = "SCHMOOPIIE"

_CHANNEL_RE = re.compile(r"^[a-z0-9_]{1,25}$")
_LOGIN_RE = _CHANNEL_RE


class TwitchSettings(BaseSettings):
    """Settings of one Twitch bridge, read from ``NATTER_TWITCH_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="NATTER_TWITCH_", extra="ignore", hide_input_in_errors=True
    )

    server: str = Field(
        DEFAULT_SERVER, description="HOST[:PORT] of Twitch's IRC interface (6697 TLS, 6667 plain)."
    )
    tls: bool = Field(True, description="Connect with TLS (Twitch's default endpoint needs it).")
    ca_file: str | None = Field(
        None, description="PEM bundle to trust instead of the system's CAs (tests, TLS proxies)."
    )
    oauth_token: SecretStr | None = Field(
        None, description="Twitch OAuth token (chat:read; chat:edit to relay); 'oauth:' optional."
    )
    username: str | None = Field(
        None, description="Twitch login that owns oauth_token; without both, log in anonymously."
    )
    relay: bool = Field(
        False, description="Also post natter messages from the room to the channel (needs a token)."
    )
    buffer_size: int = Field(
        10_000,
        ge=1,
        description="Twitch messages held while NATS is unavailable; when full, reading from "
        "Twitch pauses (nothing already received is dropped).",
    )
    dedup_cache: int = Field(
        10_000, ge=0, description="Recent Twitch message ids remembered to skip replays locally."
    )
    publish_timeout: float = Field(
        10.0, gt=0, description="Seconds one publish may retry before the message is held."
    )
    connect_timeout: float = Field(10.0, gt=0, description="Seconds for a TCP+TLS connect.")
    backoff_initial: float = Field(1.0, gt=0, description="First reconnect delay in seconds.")
    backoff_max: float = Field(60.0, gt=0, description="Longest reconnect delay in seconds.")
    stable_after: float = Field(
        30.0, ge=0, description="Seconds joined after which a drop restarts the backoff."
    )
    idle_timeout: float = Field(
        360.0, gt=0, description="Seconds of silence before the bridge PINGs Twitch itself."
    )
    pong_timeout: float = Field(
        15.0, gt=0, description="Seconds to wait for any line after that PING before reconnecting."
    )
    reconnect_overlap: float = Field(
        2.0,
        ge=0,
        description="After Twitch's RECONNECT, seconds the old connection stays open once "
        "the new one has joined (messages seen on both are stored once).",
    )
    handover_max: float = Field(
        30.0, gt=0, description="Longest time the old connection is kept after a RECONNECT."
    )
    relay_rate: int = Field(20, ge=1, description="Relayed messages allowed per relay_period.")
    relay_period: float = Field(30.0, gt=0, description="Window of relay_rate, in seconds.")
    relay_buffer: int = Field(
        100, ge=1, description="Relayed messages queued while Twitch is away; oldest dropped."
    )
    shutdown_grace: float = Field(
        10.0, ge=0, description="Seconds spent storing held messages on shutdown."
    )
    http_host: str = Field("0.0.0.0", description="Address of /healthz, /readyz and /metrics.")
    http_port: int | None = Field(
        8081, description="Port of /healthz, /readyz and /metrics; 0 serves none."
    )

    @field_validator("username")
    @classmethod
    def _login(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not _LOGIN_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a Twitch login")
        return value

    @model_validator(mode="after")
    def _credentials_pair(self) -> TwitchSettings:
        if (self.oauth_token is None) != (self.username is None):
            raise ValueError("set both NATTER_TWITCH_OAUTH_TOKEN and _USERNAME, or neither")
        return self

    @property
    def authenticated(self) -> bool:
        return self.oauth_token is not None and self.username is not None

    def password(self) -> str:
        if self.oauth_token is None:
            return ANONYMOUS_PASS
        token = self.oauth_token.get_secret_value().strip()
        return token if token.startswith("oauth:") else f"oauth:{token}"


def normalize_channel(channel: str) -> str:
    """``#Dallas`` → ``dallas``; raises ``ValueError`` for what is not a Twitch login."""
    name = channel.strip().lstrip("#").lower()
    if not _CHANNEL_RE.fullmatch(name):
        raise ValueError(f"{channel!r} is not a Twitch channel name (letters, digits, '_')")
    return name


def parse_server(server: str, tls: bool) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` → ``(host, port)``, with Twitch's port for the mode."""
    text = server.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"no host in server {server!r}")
    if not port_text:
        return host, TLS_PORT if tls else PLAIN_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in server {server!r}")
    return host, int(port_text)


def parse_bridge_spec(spec: str) -> tuple[str, str]:
    """``CHANNEL:ROOM`` (as ``natter up --twitch`` takes it) → ``(channel, room)``."""
    channel, sep, room = spec.partition(":")
    if not sep or not room:
        raise ValueError(f"expected CHANNEL:ROOM, got {spec!r}")
    return normalize_channel(channel), room.strip()


def anonymous_nick(rng: random.Random | None = None) -> str:
    draw = rng.randint(10_000, 99_999) if rng is not None else random.randint(10_000, 99_999)
    return f"justinfan{draw}"


def backoff_delay(
    attempt: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with jitter: uniformly in [c/2, c], c = min(max, initial·2^(n-1))."""
    ceiling = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    draw = rng.random() if rng is not None else random.random()
    return ceiling / 2 + draw * ceiling / 2


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ChatLine:
    """A Twitch chat message as natter stores it."""

    msg_id: str
    login: str
    doc: dict[str, Any]


def chat_line(msg: irc.Message, channel: str, *, now: datetime | None = None) -> ChatLine | None:
    """The stored message for a ``PRIVMSG`` to ``#channel``, or ``None`` if it is not one.

    ``id`` is Twitch's message id (so a replay is deduplicated), ``user`` the
    display name (else the login), ``ts`` Twitch's ``tmi-sent-ts`` when present.
    A ``/me`` action loses its CTCP wrapper and gains ``"action": true``.
    """
    if msg.command != "PRIVMSG" or len(msg.params) < 2:
        return None
    if msg.params[0].lower() != f"#{channel}":
        return None
    login = (msg.source.nick if msg.source else "") or msg.tags.get("login", "")
    text = msg.params[-1]
    action = False
    if text.startswith("\x01ACTION ") and text.endswith("\x01"):
        text, action = text[len("\x01ACTION ") : -1], True
    user = msg.tags.get("display-name", "").strip() or login
    if not user or not text.strip():
        return None
    msg_id = msg.tags.get("id") or f"twitch-{uuid.uuid4()}"
    when = now or datetime.now(UTC)
    sent = msg.tags.get("tmi-sent-ts", "")
    if sent.isdigit():
        when = datetime.fromtimestamp(int(sent) / 1000, UTC)
    doc: dict[str, Any] = {
        "id": msg_id,
        "user": user,
        "text": text,
        "ts": rfc3339(when),
        "source": "twitch",
    }
    if action:
        doc["action"] = True
    return ChatLine(msg_id, login.lower(), doc)


def relay_line(channel: str, user: str, text: str) -> str:
    """The ``PRIVMSG`` that relays a natter message; never a Twitch command.

    CR, LF and NUL become spaces (no line injection), and the ``<user>`` prefix
    means the text can never start with ``/`` or ``.`` (Twitch chat commands).
    """
    clean = " ".join("".join(" " if ch in "\r\n\0" else ch for ch in text).split())
    who = "".join(ch for ch in user if ch.isprintable() and ch not in " \r\n\0")[:32] or "?"
    body = f"<{who}> {clean}"
    if len(body) > TWITCH_MAX_TEXT:
        body = body[: TWITCH_MAX_TEXT - 1] + "…"
    return irc.format_line("PRIVMSG", f"#{channel}", body)


class RecentIds:
    """A bounded set of the most recently seen message ids (LRU)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, msg_id: str) -> bool:
        """True if ``msg_id`` was seen before; remembers it either way."""
        if self._size == 0:
            return False
        if msg_id in self._ids:
            self._ids.move_to_end(msg_id)
            return True
        self._ids[msg_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)
