"""The one room reconciler, shared by the kopf operator and ``natter up``.

:func:`reconcile_room` is idempotent and level-based: create, resume, update and
drift repair are the same call. It validates nothing itself (``Room.build`` has
done that), maps the spec onto a stream config, creates or corrects the stream,
writes the registry entry and reports the stream's state.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal

import nats.js.errors
from nats.js import api

from natter import logs
from natter.bus import RoomAdmin
from natter.errors import SpecConflict, Unavailable
from natter.rooms import Room, stream_name, subjects_filter

log = logs.get("natter.reconcile")

DUPLICATE_WINDOW_SECONDS = 120.0
Action = Literal["created", "updated", "unchanged"]


def stream_config(room: Room, *, max_replicas: int | None = None) -> api.StreamConfig:
    """The JetStream stream a room's spec asks for."""
    spec = room.spec
    replicas = spec.replicas if max_replicas is None else min(spec.replicas, max_replicas)
    retention = spec.retention
    max_bytes = retention.max_bytes_value
    return api.StreamConfig(
        name=room.stream,
        description=f"natter room {room.namespace}/{room.name}",
        subjects=[subjects_filter(room.namespace, room.name)],
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        max_age=retention.max_age_seconds,
        max_msgs=retention.max_messages if retention.max_messages > 0 else -1,
        max_bytes=max_bytes if max_bytes > 0 else -1,
        max_msg_size=room.max_stored_bytes,
        storage=api.StorageType.FILE if spec.storage == "file" else api.StorageType.MEMORY,
        num_replicas=replicas,
        # JetStream requires the dedup window to fit inside max_age.
        duplicate_window=(
            min(DUPLICATE_WINDOW_SECONDS, retention.max_age_seconds)
            if retention.max_age_seconds > 0
            else DUPLICATE_WINDOW_SECONDS
        ),
        allow_direct=True,
        deny_delete=True,
        deny_purge=False,
    )


# Fields reconcile compares and may change in place; JetStream updates them live.
_MUTABLE = (
    "description",
    "subjects",
    "max_age",
    "max_msgs",
    "max_bytes",
    "max_msg_size",
    "num_replicas",
    "duplicate_window",
    "allow_direct",
    "deny_delete",
    "deny_purge",
    "discard",
)


@dataclass(frozen=True)
class RoomStatus:
    """What the stream behind a room looks like now."""

    stream: str
    action: Action
    leader: str | None
    replicas: int
    current_replicas: int
    messages: int
    last_seq: int
    registry_changed: bool = False
    changes: list[str] = field(default_factory=list)

    def to_status(self) -> dict[str, Any]:
        """The ``status.stream`` block of a ChatRoom."""
        return {
            "name": self.stream,
            "leader": self.leader,
            "replicas": self.current_replicas,
            "messages": self.messages,
            "lastSeq": self.last_seq,
        }


def _differences(want: api.StreamConfig, have: api.StreamConfig) -> list[str]:
    changes = []
    for name in _MUTABLE:
        wanted, current = getattr(want, name), getattr(have, name)
        if isinstance(wanted, float) or isinstance(current, float):
            if abs(float(wanted or 0) - float(current or 0)) > 1e-3:
                changes.append(name)
        elif wanted != current and not (wanted is None and current in (False, 0)):
            changes.append(name)
    return changes


def _status(info: api.StreamInfo, action: Action, changes: list[str], registry: bool) -> RoomStatus:
    cluster = info.cluster
    leader = cluster.leader if cluster else None
    peers = [p for p in (cluster.replicas or []) if p.current and not p.offline] if cluster else []
    config = info.config
    return RoomStatus(
        stream=config.name or "",
        action=action,
        leader=leader,
        replicas=config.num_replicas or 1,
        current_replicas=(1 if leader else 0) + len(peers),
        messages=info.state.messages,
        last_seq=info.state.last_seq,
        registry_changed=registry,
        changes=changes,
    )


async def reconcile_room(
    admin: RoomAdmin, room: Room, *, max_replicas: int | None = None
) -> RoomStatus:
    """Make the room's stream and registry entry match its spec; return its state.

    Raises :class:`natter.errors.SpecConflict` (stream untouched) for a change
    JetStream cannot apply in place, :class:`natter.errors.Unavailable` when
    NATS cannot answer.
    """
    want = stream_config(room, max_replicas=max_replicas)
    info = await admin.stream_info(room.stream)
    action: Action
    changes: list[str] = []
    if info is None:
        info = await _refused_as_conflict(admin.add_stream(want), room)
        action = "created"
        log.info("stream created", room=room.key, stream=room.stream, replicas=want.num_replicas)
    else:
        have = info.config
        if have.storage != want.storage:
            current = str(getattr(have.storage, "value", have.storage) or "?")
            raise SpecConflict(
                f"stream {room.stream} uses {current} storage; JetStream cannot change storage "
                f"in place (the spec asks for {room.spec.storage}); the stream was left unchanged"
            )
        changes = _differences(want, have)
        if changes:
            info = await _refused_as_conflict(admin.update_stream(want), room)
            action = "updated"
            log.info("stream updated", room=room.key, stream=room.stream, changes=changes)
        else:
            action = "unchanged"
    registry = await admin.put_entry(room)
    return _status(info, action, changes, registry)


async def _refused_as_conflict(call: Awaitable[api.StreamInfo], room: Room) -> api.StreamInfo:
    """JetStream refusing a config (e.g. not enough storage) is a spec problem, not an outage."""
    try:
        return await call
    except nats.js.errors.APIError as exc:
        if isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.js.errors.ServerError):
            detail = exc.description
            raise Unavailable(f"JetStream could not apply {room.stream}: {detail}") from exc
        raise SpecConflict(
            f"JetStream refused the stream for room {room.name}: {exc.description} "
            f"(error {exc.err_code}); the stream was left unchanged"
        ) from exc


async def room_status(admin: RoomAdmin, room: Room) -> RoomStatus | None:
    """The stream's state without changing anything, or None when it is missing."""
    info = await admin.stream_info(room.stream)
    return None if info is None else _status(info, "unchanged", [], False)


async def delete_room(
    admin: RoomAdmin, namespace: str, name: str, policy: Literal["Retain", "Delete"]
) -> bool:
    """Remove a room from the registry; with ``Delete`` also remove its stream.

    Returns True when a stream was deleted.
    """
    await admin.delete_entry(namespace, name)
    if policy == "Delete":
        deleted = await admin.delete_stream(stream_name(namespace, name))
        log.info("room deleted with its stream", room=f"{namespace}.{name}", deleted=deleted)
        return deleted
    log.info("room deleted; stream retained", room=f"{namespace}.{name}")
    return False
