"""A reader for the subset of NATS configuration syntax the chart writes.

Maps (`key: value`, `key { ... }`), arrays, quoted and bare values, `#`/`//`
comments, `$VAR` references and `include "file"` (relative to the including
file). Enough to compare the rendered configuration with natter.natsconf; the
real nats-server checks the full syntax (`nats-server -t`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_TOKEN = re.compile(
    r"""\s+|,|(?P<comment>(?:\#|//)[^\n]*)
      |(?P<punct>[{}\[\]:=])
      |"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>[^']*)'
      |(?P<bare>[^\s{}\[\]:=,"'#]+)""",
    re.X,
)


class NatsConfError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise NatsConfError(f"cannot read at {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.group("punct"):
            out.append(("p", m.group("punct")))
        elif m.group("dq") is not None:
            out.append(("s", bytes(m.group("dq"), "utf-8").decode("unicode_escape")))
        elif m.group("sq") is not None:
            out.append(("s", m.group("sq")))
        elif m.group("bare"):
            out.append(("b", m.group("bare")))
    return out


class _Parser:
    def __init__(self, text: str, base: Path, env: Mapping[str, str]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.base = base
        self.env = env

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise NatsConfError("unexpected end of configuration")
        self.i += 1
        return tok

    def map_body(self, closing: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            tok = self.peek()
            if tok is None:
                if closing:
                    raise NatsConfError(f"missing {closing}")
                return out
            if tok == ("p", closing):
                self.i += 1
                return out
            kind, key = self.take()
            if kind == "p":
                raise NatsConfError(f"unexpected {key!r}")
            if key == "include":
                _, path = self.take()
                out.update(load(self.base / path, self.env))
                continue
            if self.peek() in (("p", ":"), ("p", "=")):
                self.i += 1
            out[key] = self.value()

    def value(self) -> Any:
        kind, tok = self.take()
        if (kind, tok) == ("p", "{"):
            return self.map_body("}")
        if (kind, tok) == ("p", "["):
            items = []
            while self.peek() != ("p", "]"):
                items.append(self.value())
            self.i += 1
            return items
        if kind == "s":
            return tok
        if kind == "b":
            if tok.startswith("$"):
                if tok[1:] not in self.env:
                    raise NatsConfError(f"variable {tok} is not set")
                return self.env[tok[1:]]
            if tok in ("true", "false"):
                return tok == "true"
            if re.fullmatch(r"-?\d+", tok):
                return int(tok)
            return tok
        raise NatsConfError(f"unexpected {tok!r}")


def parse(text: str, base: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return _Parser(text, base, env or {}).map_body(None)


def load(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return parse(path.read_text(), path.parent, env)
