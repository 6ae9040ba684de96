"""The fan-out cursor logic, against an in-memory stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from natter import protocol
from natter.gateway.hub import Member, RoomFeed
from natter.rooms import Room

ROOM = Room.build("default", "hubroom", {})


class FakeBus:
    """Just enough of RoomBus: a list of stored payloads, seq = index + 1."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.reads: list[tuple[int, int]] = []

    def add(self, count: int) -> None:
        for _ in range(count):
            seq = len(self.stored) + 1
            self.stored.append(protocol.stored_message(f"m{seq}", "u", f"text {seq}"))

    async def bounds(self, room: Room) -> tuple[int, int]:
        return 1, len(self.stored)

    async def iter_range(
        self, room: Room, start: int, end: int
    ) -> AsyncIterator[tuple[int, bytes]]:
        self.reads.append((start, end))
        for seq in range(max(start, 1), min(end, len(self.stored)) + 1):
            yield seq, self.stored[seq - 1]


class Sink:
    def __init__(self) -> None:
        self.user: str | None = "reader"
        self.frames: list[dict[str, Any]] = []

    def push(self, frame: str) -> None:
        self.frames.append(json.loads(frame))

    async def push_wait(self, frame: str) -> None:
        self.push(frame)

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames]


def feed_with(bus: FakeBus) -> RoomFeed:
    return RoomFeed(bus, ROOM)  # type: ignore[arg-type]


async def test_a_gap_in_the_feed_is_filled_from_the_stream_and_repeats_dropped() -> None:
    bus = FakeBus()
    feed = feed_with(bus)
    sink = Sink()
    await feed.join(1, Member(sink, 1))
    bus.add(6)
    await feed._on_message(1, bus.stored[0])
    await feed._on_message(2, bus.stored[1])
    await feed._on_message(5, bus.stored[4])  # 3 and 4 never came from the consumer
    await feed._on_message(2, bus.stored[1])  # a redelivery after a consumer reset
    await feed._on_message(6, bus.stored[5])
    assert sink.seqs() == [1, 2, 3, 4, 5, 6]
    assert (3, 4) in bus.reads


async def test_join_replays_then_goes_live_without_gap_or_duplicate() -> None:
    bus = FakeBus()
    bus.add(10)
    feed = feed_with(bus)
    for seq in range(1, 11):
        await feed._on_message(seq, bus.stored[seq - 1])
    early = Sink()
    member = Member(early, 4)
    await feed.join(1, member)
    bus.add(2)
    await feed._on_message(11, bus.stored[10])
    await feed._on_message(12, bus.stored[11])
    assert early.seqs() == list(range(4, 13))


async def test_live_messages_arriving_during_replay_are_held_then_delivered_once() -> None:
    bus = FakeBus()
    bus.add(3)
    feed = feed_with(bus)
    feed.last = 3  # the feed started after these were stored; they are not in its memory
    sink = Sink()
    member = Member(sink, 1)
    feed.members[7] = member  # registered, still replaying
    bus.add(1)
    await feed._on_message(4, bus.stored[3])
    assert sink.seqs() == []  # held while replaying
    await feed._replay(member, 1, 3)
    member.go_live()
    assert sink.seqs() == [1, 2, 3, 4]


async def test_a_failed_replay_resumes_from_the_member_cursor() -> None:
    bus = FakeBus()
    bus.add(5)
    feed = feed_with(bus)
    feed.last = 5
    sink = Sink()
    member = Member(sink, 1)
    original = bus.iter_range

    async def flaky(room: Room, start: int, end: int) -> AsyncIterator[tuple[int, bytes]]:
        async for seq, data in original(room, start, end):
            if seq == 3:
                raise RuntimeError("stream went away")
            yield seq, data

    bus.iter_range = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="went away"):
        await feed.join(1, member)
    assert sink.seqs() == [1, 2] and 1 not in feed.members
    bus.iter_range = original  # type: ignore[method-assign]
    await feed.join(1, member)
    assert sink.seqs() == [1, 2, 3, 4, 5]
