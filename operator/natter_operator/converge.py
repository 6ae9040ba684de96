"""What one reconcile of a ChatRoom concludes, independent of kopf.

:func:`converge` calls the shared reconciler (``natter.reconcile``) and turns its
result, or its failure, into conditions, the ``status.stream`` block, Kubernetes
Events and whether to retry. The kopf handlers only record the :class:`Outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from natter import logs
from natter.errors import InvalidSpec, SpecConflict, Unavailable
from natter.reconcile import RoomStatus, delete_room, reconcile_room, room_status
from natter.rooms import Room, RoomSpec, stream_name
from natter_operator import conditions as c
from natter_operator.link import NatsLink

log = logs.get("natter.operator")


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    conditions: tuple[c.Condition, ...]
    stream: Mapping[str, Any] | None = None
    events: tuple[Event, ...] = ()
    retry: str | None = None
    """Set when trying again later may succeed (NATS away): a kopf.TemporaryError."""
    permanent: str | None = None
    """Set when retrying the same spec cannot succeed: a kopf.PermanentError."""


def _ready(state: RoomStatus) -> c.Condition:
    if state.leader:
        return c.Condition(
            c.READY, "True", c.STREAM_READY, f"stream {state.stream} is led by {state.leader}"
        )
    return c.Condition(
        c.READY,
        "False",
        c.NO_LEADER,
        f"stream {state.stream} has no leader (an election is running or quorum is lost)",
    )


def _change_events(state: RoomStatus, *, repair: bool) -> tuple[Event, ...]:
    stream = state.stream
    if state.action == "created":
        if repair:
            return (
                Event(
                    "Normal",
                    "DriftRepaired",
                    f"stream {stream} was missing; recreated it with {state.replicas} replicas",
                ),
            )
        return (
            Event(
                "Normal", "StreamCreated", f"created stream {stream} with {state.replicas} replicas"
            ),
        )
    if state.action == "updated":
        changed = ", ".join(state.changes)
        if repair:
            return (
                Event(
                    "Normal",
                    "DriftRepaired",
                    f"stream {stream} had drifted ({changed}); corrected it",
                ),
            )
        return (Event("Normal", "StreamUpdated", f"updated stream {stream}: {changed}"),)
    if state.registry_changed:
        reason = "DriftRepaired" if repair else "RegistryUpdated"
        return (Event("Normal", reason, f"wrote the room registry entry for {stream}"),)
    return ()


async def converge(
    link: NatsLink,
    namespace: str,
    name: str,
    spec: Mapping[str, Any] | None,
    *,
    max_replicas: int | None = None,
    repair: bool = False,
) -> Outcome:
    """Reconcile one room; never raises for NATS trouble or a bad spec.

    ``repair`` marks the periodic run: anything it had to change was drift.
    """
    try:
        room = Room.build(namespace, name, dict(spec or {}))
    except InvalidSpec as exc:
        msg = exc.message
        return Outcome(
            (
                c.Condition(c.READY, "False", c.INVALID_SPEC, msg),
                c.Condition(c.SPEC_APPLIED, "False", c.INVALID_SPEC, msg),
            ),
            events=(Event("Warning", c.INVALID_SPEC, msg),),
            permanent=msg,
        )
    try:
        admin = await link.admin()
        try:
            state = await reconcile_room(admin, room, max_replicas=max_replicas)
        except SpecConflict as exc:
            current = await room_status(admin, room)
            ready = (
                _ready(current)
                if current
                else c.Condition(c.READY, "False", c.SPEC_CONFLICT, exc.message)
            )
            return Outcome(
                (ready, c.Condition(c.SPEC_APPLIED, "False", c.SPEC_CONFLICT, exc.message)),
                stream=current.to_status() if current else None,
                events=(Event("Warning", c.SPEC_CONFLICT, exc.message),),
                permanent=exc.message,
            )
    except Unavailable as exc:
        msg = f"NATS is unavailable: {exc.message}"
        return Outcome(
            (c.Condition(c.READY, "False", c.NATS_UNAVAILABLE, msg),),
            events=(Event("Warning", c.NATS_UNAVAILABLE, msg),),
            retry=msg,
        )
    except Exception as exc:  # an unexpected JetStream answer: report it, retry later
        log.exception("reconcile failed", room=room.key)
        msg = f"reconciling stream {room.stream} failed: {exc!r}"
        return Outcome(
            (c.Condition(c.READY, "False", "ReconcileError", msg),),
            events=(Event("Warning", "ReconcileError", msg),),
            retry=msg,
        )
    applied = c.Condition(
        c.SPEC_APPLIED, "True", c.APPLIED, f"stream {state.stream} matches the spec"
    )
    return Outcome(
        (_ready(state), applied),
        stream=state.to_status(),
        events=_change_events(state, repair=repair),
    )


def deletion_policy(spec: Mapping[str, Any] | None) -> Literal["Retain", "Delete"]:
    """The spec's deletionPolicy; Retain (the safe choice) when the spec is unreadable."""
    try:
        policy: Literal["Retain", "Delete"] = RoomSpec.parse(dict(spec or {})).deletion_policy
    except InvalidSpec:
        return "Retain"
    return policy


async def finalize(
    link: NatsLink, namespace: str, name: str, spec: Mapping[str, Any] | None
) -> Event:
    """Remove the room per its deletionPolicy; raises :class:`Unavailable` to be retried."""
    policy = deletion_policy(spec)
    stream = stream_name(namespace, name)
    deleted = await delete_room(await link.admin(), namespace, name, policy)
    if policy == "Retain":
        return Event(
            "Normal",
            "StreamRetained",
            f"room deleted; stream {stream} retained (deletionPolicy Retain)",
        )
    if deleted:
        return Event("Normal", "StreamDeleted", f"deleted stream {stream} (deletionPolicy Delete)")
    return Event("Normal", "StreamDeleted", f"stream {stream} was already gone")
