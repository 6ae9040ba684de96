"""IRC lines with IRCv3 message tags: a parser and a formatter.

The grammar is RFC 1459's, extended by the IRCv3 message-tags specification::

    [@tags SPACE] [:source SPACE] command [params] CRLF

Tag values are escaped on the wire (``\\:`` for ``;``, ``\\s`` for space,
``\\\\`` for ``\\``, ``\\r`` and ``\\n``); :func:`parse` unescapes them and
:func:`format_line` escapes them. Anything that is not a well-formed line
raises :class:`IRCParseError`, so a reader can log it and move on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: RFC 1459 allows 512 bytes without tags; IRCv3 adds up to 8191 bytes of tags.
MAX_LINE_BYTES = 512 + 8191

_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_ESCAPE_RE = re.compile(r"\\(.)?", re.DOTALL)
_NEEDS_ESCAPE_RE = re.compile(r"[; \\\r\n]")
_COMMAND_RE = re.compile(r"^(?:[A-Za-z]+|[0-9]{3})$")
_FORBIDDEN = ("\r", "\n", "\0")


class IRCParseError(ValueError):
    """A line that is not a well-formed IRC message."""


@dataclass(frozen=True, slots=True)
class Source:
    """The ``:source`` of a message: ``nick!user@host`` or a server name."""

    nick: str
    user: str | None = None
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        nick, _, host = text.partition("@")
        nick, _, user = nick.partition("!")
        if not nick:
            raise IRCParseError(f"empty source {text!r}")
        return cls(nick, user or None, host or None)

    def __str__(self) -> str:
        out = self.nick
        if self.user:
            out += f"!{self.user}"
        if self.host:
            out += f"@{self.host}"
        return out


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed IRC line. ``command`` is upper-case; ``params`` include the trailing one."""

    command: str
    params: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    source: Source | None = None

    @property
    def trailing(self) -> str:
        """The last parameter (the message text of a PRIVMSG), or ``""``."""
        return self.params[-1] if self.params else ""

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if -len(self.params) <= index < len(self.params) else default

    def format(self) -> str:
        return format_line(
            self.command,
            *self.params,
            tags=self.tags,
            source=str(self.source) if self.source else None,
        )


def unescape_tag_value(value: str) -> str:
    """Undo IRCv3 tag escaping; an unknown escape keeps its character, a lone ``\\`` goes."""
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1) or "", m.group(1) or ""), value)


def escape_tag_value(value: str) -> str:
    if not _NEEDS_ESCAPE_RE.search(value):
        return value
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def _parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if not key:
            raise IRCParseError(f"tag without a key in {text[:80]!r}")
        # The last occurrence of a repeated key wins (IRCv3).
        tags[key] = unescape_tag_value(value)
    return tags


def parse(line: str | bytes) -> Message:
    """Parse one line (with or without its CRLF)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IRCParseError(f"line is not UTF-8: {exc}") from exc
    line = line.rstrip("\r\n")
    if not line.strip(" "):
        raise IRCParseError("empty line")
    if "\0" in line or "\r" in line or "\n" in line:
        raise IRCParseError("line contains NUL, CR or LF")
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        raise IRCParseError(f"line longer than {MAX_LINE_BYTES} bytes")

    rest = line
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        tags = _parse_tags(raw_tags)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        raw_source, _, rest = rest[1:].partition(" ")
        source = Source.parse(raw_source)
        rest = rest.lstrip(" ")

    command, _, rest = rest.partition(" ")
    if not _COMMAND_RE.match(command):
        raise IRCParseError(f"bad or missing command in {line[:120]!r}")

    params: list[str] = []
    rest = rest.lstrip(" ")
    while rest:
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
        rest = rest.lstrip(" ")
    return Message(command.upper(), tuple(params), tags, source)


def format_line(
    command: str,
    *params: str,
    tags: Mapping[str, str] | None = None,
    source: str | None = None,
) -> str:
    """One IRC line without its CRLF. Raises ``ValueError`` for what cannot be sent safely."""
    if not _COMMAND_RE.match(command):
        raise ValueError(f"bad IRC command {command!r}")
    parts: list[str] = []
    if tags:
        items = []
        for key, value in tags.items():
            if not key or any(ch in key for ch in "; =\\\r\n\0"):
                raise ValueError(f"bad tag key {key!r}")
            items.append(f"{key}={escape_tag_value(value)}" if value else key)
        parts.append("@" + ";".join(items))
    if source:
        if " " in source or any(ch in source for ch in _FORBIDDEN):
            raise ValueError(f"bad source {source!r}")
        parts.append(":" + source)
    parts.append(command.upper())
    parts.extend(_format_params(params))
    return " ".join(parts)


def _format_params(params: Sequence[str]) -> list[str]:
    out: list[str] = []
    for index, param in enumerate(params):
        if any(ch in param for ch in _FORBIDDEN):
            raise ValueError(f"IRC parameter contains CR, LF or NUL: {param!r}")
        last = index == len(params) - 1
        if last and (not param or " " in param or param.startswith(":")):
            out.append(":" + param)
        elif not param or " " in param or param.startswith(":"):
            raise ValueError(
                f"only a last IRC parameter may be empty, spaced or ':'-led: {param!r}"
            )
        else:
            out.append(param)
    return out
