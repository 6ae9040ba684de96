"""An independent history checker for chat under faults, in the manner of Jepsen.

Clients record what they did and saw into a :class:`History`: every send they
attempted, every ``ack`` (with its seq), every ``error`` and every delivered
``message``, with the time it arrived and the connection it came on. After the
run the harness reads each room's stream back (with plain nats-py, not
natter's code) and :func:`check` compares the two. Nothing here imports natter:
the checker judges natter, it does not trust it.

The properties:

* every acknowledged message is stored exactly once, at the seq it was acked with
  (an ack that disagrees with the store is a lost write);
* a retried id never gets two different seqs, and no seq is acked for two ids;
* everything stored was sent by a client, with the text and user it was sent with;
* no client receives a seq twice or out of order in a room, across reconnects;
* every delivered message is the stored message at that seq (so all clients of
  a room agree on the order);
* no client misses a stored seq after the point it joined from (nothing is lost
  across reconnects).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

#: How many examples of each kind of violation a report keeps.
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Sent:
    client: str
    user: str
    room: str
    id: str
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Ack:
    client: str
    room: str
    id: str
    seq: int
    conn: int
    at: float


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    client: str
    code: str
    ref: str | None
    message: str
    conn: int
    at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    client: str
    room: str
    seq: int
    id: str
    user: str
    text: str
    conn: int
    at: float


@dataclass(frozen=True, slots=True)
class Session:
    """One WebSocket connection of one client, from welcome to close."""

    client: str
    conn: int
    url: str
    gateway: str
    opened: float
    closed: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Stored:
    """One message as the stream holds it."""

    seq: int
    id: str
    user: str
    text: str


@dataclass
class History:
    """Everything the clients did and saw, appended as it happened."""

    sent: list[Sent] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    errors: list[ErrorFrame] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    #: client -> room -> the seq it first joined after (``since``)
    joined_from: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    marks: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def mark(self, name: str) -> float:
        """Note a fault event (``kill``, ``heal``, ...) at the current time."""
        now = time.monotonic()
        self.marks.append((name, now))
        return now

    def mark_at(self, name: str) -> float:
        for mark, at in self.marks:
            if mark == name:
                return at
        raise KeyError(name)

    def closed_session(self, client: str, conn: int, reason: str) -> None:
        for i, session in enumerate(self.sessions):
            if session.client == client and session.conn == conn and session.closed is None:
                self.sessions[i] = Session(
                    session.client,
                    session.conn,
                    session.url,
                    session.gateway,
                    session.opened,
                    time.monotonic(),
                    reason,
                )


@dataclass
class Report:
    """The verdict on one history, with the figures the issue asks for."""

    acked: int = 0
    sent: int = 0
    stored: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates_delivered: int = 0
    out_of_order: int = 0
    missed: int = 0
    problems: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def problem(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.problems.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(example)

    @property
    def ok(self) -> bool:
        return not self.counts

    def describe(self) -> str:
        head = (
            f"sent {self.sent}, acked {self.acked}, stored {self.stored}, "
            f"delivered {self.delivered}; lost {self.lost}, duplicates delivered "
            f"{self.duplicates_delivered}, out of order {self.out_of_order}, missed {self.missed}"
        )
        lines = [head]
        for kind, examples in self.problems.items():
            lines.append(f"  {kind}: {self.counts[kind]}, e.g.")
            lines.extend(f"    {example}" for example in examples)
        return "\n".join(lines)


def check(history: History, stored: dict[str, list[Stored]]) -> Report:
    """Judge ``history`` against the rooms' final contents (``room -> messages``)."""
    report = Report(
        acked=len({(a.room, a.id) for a in history.acks}),
        sent=len(history.sent),
        stored=sum(len(v) for v in stored.values()),
        delivered=len(history.deliveries),
    )
    by_seq = {room: {m.seq: m for m in msgs} for room, msgs in stored.items()}
    sent = {(s.room, s.id): s for s in history.sent}
    _check_store(report, stored, sent)
    _check_acks(report, history, by_seq)
    _check_deliveries(report, history, by_seq)
    return report


def _check_store(
    report: Report, stored: dict[str, list[Stored]], sent: dict[tuple[str, str], Sent]
) -> None:
    for room, msgs in stored.items():
        seqs = [m.seq for m in msgs]
        if seqs != sorted(set(seqs)):
            report.problem("store not in seq order", f"{room}: {seqs[:20]}")
        at: dict[str, int] = {}
        for m in msgs:
            if m.id in at:
                report.problem("stored twice", f"{room}: id {m.id} at seq {at[m.id]} and {m.seq}")
            at[m.id] = m.seq
            origin = sent.get((room, m.id))
            if origin is None:
                report.problem("stored but never sent", f"{room} seq {m.seq}: id {m.id}")
            elif (origin.user, origin.text) != (m.user, m.text):
                report.problem(
                    "stored content differs from what was sent",
                    f"{room} seq {m.seq}: {m.user}/{m.text!r} vs {origin.user}/{origin.text!r}",
                )


def _check_acks(report: Report, history: History, by_seq: dict[str, dict[int, Stored]]) -> None:
    acked: dict[tuple[str, str], int] = {}
    owner: dict[tuple[str, int], str] = {}
    lost: set[tuple[str, str]] = set()
    for ack in history.acks:
        key = (ack.room, ack.id)
        if key in acked and acked[key] != ack.seq:
            report.problem(
                "one id acked with two seqs", f"{ack.room}: {ack.id} at {acked[key]} and {ack.seq}"
            )
        acked.setdefault(key, ack.seq)
        other = owner.setdefault((ack.room, ack.seq), ack.id)
        if other != ack.id:
            report.problem(
                "one seq acked for two ids", f"{ack.room} seq {ack.seq}: {other}, {ack.id}"
            )
        stored = by_seq.get(ack.room, {}).get(ack.seq)
        if (stored is None or stored.id != ack.id) and key not in lost:
            lost.add(key)
            found = stored.id if stored else "nothing"
            report.problem(
                "acked but lost", f"{ack.room}: {ack.id} acked at seq {ack.seq}; stored {found}"
            )
    report.lost = len(lost)


def _check_deliveries(
    report: Report, history: History, by_seq: dict[str, dict[int, Stored]]
) -> None:
    streams: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
    for d in history.deliveries:
        streams[(d.client, d.room)].append(d)
    for (client, room), got in streams.items():
        seen: set[int] = set()
        high = 0
        for d in got:
            if d.seq in seen:
                report.duplicates_delivered += 1
                report.problem("delivered twice", f"{client} {room} seq {d.seq} (conn {d.conn})")
            elif d.seq < high:
                report.out_of_order += 1
                report.problem(
                    "delivered out of order", f"{client} {room} seq {d.seq} after {high}"
                )
            seen.add(d.seq)
            high = max(high, d.seq)
            stored = by_seq.get(room, {}).get(d.seq)
            if stored is None:
                report.problem("delivered but not stored", f"{client} {room} seq {d.seq} id {d.id}")
            elif (stored.id, stored.user, stored.text) != (d.id, d.user, d.text):
                report.problem(
                    "clients disagree with the store",
                    f"{client} {room} seq {d.seq}: got {d.id}, stored {stored.id}",
                )
    for client, rooms in history.joined_from.items():
        for room, since in rooms.items():
            seen = {d.seq for d in streams.get((client, room), [])}
            expected = {seq for seq in by_seq.get(room, {}) if seq > since}
            missing = sorted(expected - seen)
            if missing:
                report.missed += len(missing)
                report.problem(
                    "missed (never delivered)",
                    f"{client} {room}: {len(missing)} seqs, first {missing[:10]}",
                )


# figures -------------------------------------------------------------------


def longest_ack_gap(history: History, start: float, end: float) -> float:
    """Longest time, in ``[start, end]``, that any one writing client went without an ack.

    Under steady load that is the unavailability a user at that client saw.
    """
    per_client: dict[str, list[float]] = defaultdict(list)
    for ack in history.acks:
        per_client[ack.client].append(ack.at)
    worst = 0.0
    for times in per_client.values():
        points = [start, *sorted(t for t in times if start <= t <= end), end]
        worst = max(worst, *(b - a for a, b in itertools.pairwise(points)))
    return worst


def ack_latency(history: History) -> dict[str, float]:
    """Median and p99 seconds from a message's first send to its (first) ack."""
    first_sent = {(s.room, s.id): s.at for s in history.sent}
    first_ack: dict[tuple[str, str], float] = {}
    for ack in history.acks:
        first_ack.setdefault((ack.room, ack.id), ack.at)
    lat = sorted(at - first_sent[k] for k, at in first_ack.items() if k in first_sent)
    if not lat:
        return {"p50": 0.0, "p99": 0.0}
    return {"p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


def summary(history: History, report: Report, start: float, end: float) -> dict[str, Any]:
    """The per-scenario figures: unavailability, loss, duplicates, errors seen."""
    return {
        "unavailable_s": round(longest_ack_gap(history, start, end), 2),
        "lost": report.lost,
        "duplicates": report.duplicates_delivered,
        "acked": report.acked,
        "errors_seen": len(history.errors),
        "reconnects": max(0, len(history.sessions) - len({s.client for s in history.sessions})),
        **{f"ack_{k}_s": round(v, 3) for k, v in ack_latency(history).items()},
    }
