"""The shared reconciler against a real 3-node cluster."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS

from natter import bus
from natter.errors import SpecConflict
from natter.reconcile import delete_room, reconcile_room
from natter.rooms import Room


async def test_reconcile_is_idempotent_and_updates_in_place(nats_client: NATS) -> None:
    admin = bus.RoomAdmin(nats_client)
    room = Room.build("default", "tuned", {"retention": {"maxAge": "1h", "maxMessages": 100}})
    first = await reconcile_room(admin, room)
    assert first.action == "created" and first.replicas == 3 and first.leader
    assert (await reconcile_room(admin, room)).action == "unchanged"
    changed = Room.build("default", "tuned", {"retention": {"maxAge": "2h", "maxMessages": 50}})
    update = await reconcile_room(admin, changed)
    assert update.action == "updated" and set(update.changes) == {"max_age", "max_msgs"}
    info = await admin.stream_info(room.stream)
    assert info is not None and info.config.max_msgs == 50 and info.config.max_age == 7200
    entry = await bus.Registry(nats_client).lookup("default", "tuned")
    assert entry is not None and entry.spec.retention.max_messages == 50


async def test_a_storage_change_is_refused_and_the_stream_left_alone(nats_client: NATS) -> None:
    admin = bus.RoomAdmin(nats_client)
    await reconcile_room(admin, Room.build("default", "solid", {"storage": "file"}))
    with pytest.raises(SpecConflict, match="storage"):
        await reconcile_room(admin, Room.build("default", "solid", {"storage": "memory"}))
    info = await admin.stream_info("ROOM_default_solid")
    assert info is not None
    assert getattr(info.config.storage, "value", info.config.storage) == "file"


async def test_a_stream_jetstream_cannot_hold_is_a_spec_conflict(nats_client: NATS) -> None:
    admin = bus.RoomAdmin(nats_client)
    # Each embedded node has 256 MiB of memory storage; 100Gi cannot be reserved.
    huge = Room.build("default", "huge", {"storage": "memory", "retention": {"maxBytes": "100Gi"}})
    with pytest.raises(SpecConflict, match="refused"):
        await reconcile_room(admin, huge)
    assert await admin.stream_info(huge.stream) is None


async def test_delete_policies(nats_client: NATS) -> None:
    admin = bus.RoomAdmin(nats_client)
    registry = bus.Registry(nats_client)
    for name in ("keep", "drop"):
        await reconcile_room(admin, Room.build("default", name, {}))
    assert await delete_room(admin, "default", "keep", "Retain") is False
    assert await delete_room(admin, "default", "drop", "Delete") is True
    assert await admin.stream_info("ROOM_default_keep") is not None
    assert await admin.stream_info("ROOM_default_drop") is None
    assert await registry.lookup("default", "keep") is None
    assert await registry.lookup("default", "drop") is None


async def test_parallel_reconciles_share_one_registry_and_short_max_age_works(
    nats_client: NATS,
) -> None:
    import asyncio

    admin = bus.RoomAdmin(nats_client)
    rooms = [Room.build("default", f"par-{i}", {"retention": {"maxAge": "1m"}}) for i in range(3)]
    results = await asyncio.gather(*(reconcile_room(admin, r) for r in rooms))
    assert [r.action for r in results] == ["created"] * 3
    info = await admin.stream_info(rooms[0].stream)
    assert info is not None and info.config.duplicate_window == 60
