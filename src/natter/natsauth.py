"""NATS users with least-privilege permissions, one per natter component.

The same permission sets are rendered into the embedded cluster's config by
``natter up`` (when NATS authorization is on) and described for the Helm chart
in ``docs/nats-permissions.md``. What each user may do:

* **operator** — the only user that may create, update or delete streams and
  write the room registry; it never touches chat subjects.
* **gateway** — publishes chat and signals in its namespace, reads streams and
  the registry through consumers; cannot change or delete streams or the registry.
* **bridge** (one per room) — publishes to and follows only its own room.
* **analytics** — reads room streams and the registry; publishes nothing but
  JetStream API reads.

Each user gets its own reply-subject prefix (``_INBOX_<user>``) and may
subscribe only there, so no component can read another's JetStream replies
(which carry room history).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natter.config import Settings
from natter.rooms import REGISTRY_BUCKET, stream_name

Permissions = dict[str, dict[str, list[str]]]

KV_STREAM = f"KV_{REGISTRY_BUCKET}"
#: Stream administration that only the operator holds.
STREAM_ADMIN = [
    "$JS.API.STREAM.CREATE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.STREAM.RESTORE.>",
    "$JS.API.STREAM.SNAPSHOT.>",
    "$JS.API.STREAM.PEER.>",
    "$JS.API.STREAM.LEADER.>",
    "$JS.API.META.>",
    "$JS.API.ACCOUNT.>",
    f"$KV.{REGISTRY_BUCKET}.>",
]


def inbox_prefix(user: str) -> str:
    return f"_INBOX_{user}"


def _registry_read() -> list[str]:
    return [
        f"$JS.API.STREAM.INFO.{KV_STREAM}",
        f"$JS.API.STREAM.MSG.GET.{KV_STREAM}",
        f"$JS.API.DIRECT.GET.{KV_STREAM}",
        f"$JS.API.DIRECT.GET.{KV_STREAM}.>",
    ]


def _readers(stream: str) -> list[str]:
    """What ordered consumers on ``stream`` (``*`` for any) need."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]


def gateway(namespace: str) -> Permissions:
    return {
        "publish": {
            "allow": [
                f"chat.{namespace}.>",
                f"chatx.{namespace}.>",
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.*",
                *_registry_read(),
                *_readers("*"),
            ],
            "deny": STREAM_ADMIN,
        },
        "subscribe": {"allow": [inbox_prefix("gateway") + ".>", f"chatx.{namespace}.>"]},
    }


def operator() -> Permissions:
    return {
        "publish": {
            "allow": [
                "$JS.API.INFO",
                "$JS.API.STREAM.CREATE.*",
                "$JS.API.STREAM.UPDATE.*",
                "$JS.API.STREAM.DELETE.*",
                "$JS.API.STREAM.INFO.*",
                "$JS.API.STREAM.NAMES",
                "$JS.API.STREAM.LIST",
                *_registry_read(),
                f"$KV.{REGISTRY_BUCKET}.>",
            ],
            "deny": ["chat.>", "chatx.>"],
        },
        "subscribe": {"allow": [inbox_prefix("operator") + ".>"]},
    }


def bridge_user(namespace: str, room: str) -> str:
    return f"bridge-{namespace}-{room}"


def bridge(namespace: str, room: str) -> Permissions:
    stream = stream_name(namespace, room)
    return {
        "publish": {
            "allow": [
                f"chat.{namespace}.{room}.>",
                "$JS.API.INFO",
                f"$JS.API.STREAM.INFO.{stream}",
                *_readers(stream),
            ],
            "deny": STREAM_ADMIN,
        },
        "subscribe": {"allow": [inbox_prefix(bridge_user(namespace, room)) + ".>"]},
    }


def analytics() -> Permissions:
    return {
        "publish": {
            "allow": [
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.*",
                "$JS.API.STREAM.NAMES",
                "$JS.API.STREAM.LIST",
                *_registry_read(),
                *_readers("*"),
                "$JS.API.CONSUMER.MSG.NEXT.*.*",
                "$JS.ACK.>",
            ],
            "deny": [*STREAM_ADMIN, "chat.>", "chatx.>"],
        },
        "subscribe": {"allow": [inbox_prefix("analytics") + ".>"]},
    }


@dataclass(frozen=True)
class NatsUser:
    name: str
    password: str
    permissions: Permissions

    def env(self) -> dict[str, str]:
        """``NATTER_NATS_*`` variables that make a natter process connect as this user."""
        return {
            "NATTER_NATS_USER": self.name,
            "NATTER_NATS_PASSWORD": self.password,
            "NATTER_NATS_INBOX_PREFIX": inbox_prefix(self.name),
        }

    def settings(self, nats_url: str) -> Settings:
        return Settings(
            nats_url=nats_url,
            nats_user=self.name,
            nats_password=self.password,
            nats_inbox_prefix=inbox_prefix(self.name),
        )

    def config(self) -> dict[str, Any]:
        return {"user": self.name, "password": self.password, "permissions": self.permissions}


class NatsUsers:
    """Every component's user, with generated passwords."""

    def __init__(self, users: list[NatsUser]) -> None:
        self.users = {u.name: u for u in users}

    @classmethod
    def generate(cls, namespace: str = "default", bridge_rooms: Sequence[str] = ()) -> NatsUsers:
        def pw() -> str:
            return secrets.token_urlsafe(24)

        users = [
            NatsUser("operator", pw(), operator()),
            NatsUser("gateway", pw(), gateway(namespace)),
            NatsUser("analytics", pw(), analytics()),
        ]
        users += [
            NatsUser(bridge_user(namespace, r), pw(), bridge(namespace, r))
            for r in sorted(set(bridge_rooms))
        ]
        return cls(users)

    def __getitem__(self, name: str) -> NatsUser:
        return self.users[name]

    def render(self) -> str:
        """The ``authorization`` block of a NATS server config (JSON is valid NATS config)."""
        body = json.dumps([u.config() for u in self.users.values()], indent=2)
        return (
            f"# natter component users (natter.natsauth)\nauthorization {{\n  users: {body}\n}}\n"
        )

    def save(self, path: Path) -> None:
        """The users' credentials, readable by the owner only (tools and tests read it)."""
        data = {u.name: {**u.env(), "permissions": u.permissions} for u in self.users.values()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)


#: Placeholders in :func:`chart_permissions`, filled in by the Helm chart per release and bridge.
CHART_NAMESPACE = "<namespace>"
CHART_ROOM = "<room>"
CHART_USER = "<user>"


def chart_permissions() -> dict[str, Any]:
    """Every component's user and permissions with ``<namespace>``/``<room>``/``<user>``
    placeholders: the Helm chart's copy (``chart/natter/files/nats-permissions.json``),
    which its templates fill in with ``replace``; a chart test keeps the file equal to this."""
    ns, room = CHART_NAMESPACE, CHART_ROOM
    return {
        "_generated": "by `python -m natter.natsauth` from src/natter/natsauth.py; do not edit",
        "inboxPrefix": inbox_prefix(CHART_USER),
        "users": {
            "operator": {"name": "operator", "permissions": operator()},
            "gateway": {"name": "gateway", "permissions": gateway(ns)},
            "analytics": {"name": "analytics", "permissions": analytics()},
            "bridge": {"name": bridge_user(ns, room), "permissions": bridge(ns, room)},
        },
    }


def chart_permissions_json() -> str:
    return json.dumps(chart_permissions(), indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover - `python -m natter.natsauth > chart/.../file`
    import sys

    sys.stdout.write(chart_permissions_json())
