"""Everything a chaos scenario runs on: a real 3-node NATS cluster, two gateway
processes, R3 rooms, resilient clients under steady load, and the read-back of
the rooms' streams that the checker compares with what the clients saw.

Used by the tests (one run per scenario) and by ``bench/`` (many runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js import api

from natter.embedded import NatsCluster, check_for
from tests.chaos.checker import Ack, History, Report, Sent, Stored, check, summary
from tests.chaos.netcut import SplitNet
from tests.chaos.resilient import ResilientClient
from tests.fixtures.nats import make_room
from tests.fixtures.natter import GatewayProcs

ROOMS = ("chaos-a", "chaos-b")
#: The load generator sends faster than a person may; lift the per-user send limit.
GATEWAY_ENV = {"NATTER_SEND_RATE": "1000", "NATTER_SEND_BURST": "1000"}


@dataclass
class Load:
    """Each client sends ``rate`` messages a second, at most ``window`` unacked at once."""

    clients: list[ResilientClient]
    rooms: tuple[str, ...]
    rate: float = 20.0
    window: int = 4
    send_deadline: float = 90.0
    prefix: str = ""
    text_size: int = 0
    failures: list[BaseException] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> Load:
        self._tasks = [
            asyncio.create_task(self._writer(c), name=f"load-{c.name}") for c in self.clients
        ]
        return self

    async def _writer(self, client: ResilientClient) -> None:
        window = asyncio.Semaphore(self.window)
        i = 0
        while not self._stop.is_set():
            await window.acquire()
            if self._stop.is_set():
                window.release()
                break
            room = self.rooms[i % len(self.rooms)]
            msg_id = f"{self.prefix}{client.name}-{i}"
            text = f"{msg_id} says hi".ljust(self.text_size, ".")
            task = asyncio.create_task(self._one(client, room, text, msg_id, window))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            i += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0 / self.rate)

    async def _one(
        self, client: ResilientClient, room: str, text: str, msg_id: str, window: asyncio.Semaphore
    ) -> None:
        try:
            await client.send(room, text, msg_id, deadline=self.send_deadline)
        except Exception as exc:
            self.failures.append(exc)
        finally:
            window.release()

    async def stop(self, timeout: float = 60.0) -> None:
        """Stop sending and wait for every send in flight to be acked (or give up)."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
            for task in pending:
                task.cancel()
                self.failures.append(TimeoutError("send still unacked when the load stopped"))


@dataclass
class Outcome:
    """What one scenario run produced."""

    name: str
    report: Report
    figures: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        figures = ", ".join(f"{k}={v}" for k, v in {**self.figures, **self.notes}.items())
        return f"{self.name}: {figures}\n{self.report.describe()}"


class Harness:
    """A cluster, gateways, rooms and clients for one scenario run."""

    def __init__(self, tmp: Path, *, split: bool = False, seed: int | None = None) -> None:
        self.tmp = tmp
        self.cluster = NatsCluster(tmp / "nats", 3)
        self.net: SplitNet | None = SplitNet().create() if split else None
        self.isolated: str | None = None
        if self.net is not None:
            self.isolated = self.net.isolate_last(self.cluster)
        self.gateways = GatewayProcs(self.cluster, tmp, env=dict(GATEWAY_ENV))
        self.history = History()
        self.clients: list[ResilientClient] = []
        self.rooms = ROOMS
        self.ports: list[int] = []
        self.rng = random.Random(seed if seed is not None else time.time_ns())
        self.nc: Any = None
        self.load: Load | None = None
        self.flood: Load | None = None

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/ws" for port in self.ports]

    def streams(self) -> dict[str, str]:
        return {room: f"ROOM_default_{room}" for room in self.rooms}

    # lifecycle -----------------------------------------------------------------

    async def start(self, *, gateways: int = 2, **gateway_env: str) -> None:
        await self.cluster.start()
        self.nc = await nats.connect(
            servers=self.cluster.client_urls,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            name="chaos-checker",
            error_cb=_quiet,
            disconnected_cb=_quiet_event,
        )
        for room in self.rooms:
            # Right after start JetStream may not know every peer yet ("no suitable
            # peers for placement"); creating the stream is idempotent, so retry.
            await check_for(30, lambda room=room: self._make_room(room), what=f"room {room}")
        for _ in range(gateways):
            self.ports.append(self.gateways.start(**gateway_env))
        try:
            await asyncio.gather(*(self.gateways.wait_ready(p, timeout=60) for p in self.ports))
        except TimeoutError as exc:
            tails = [
                f"gateway :{port}: "
                + " | ".join(
                    (self.tmp / f"gateway-{port}.log").read_text(errors="replace").splitlines()[-5:]
                )
                for port in self.ports
            ]
            raise TimeoutError(f"{exc}\n" + "\n".join(tails)) from exc

    async def _make_room(self, name: str) -> bool:
        await make_room(self.nc, name)
        return True

    async def start_clients(self, count: int = 4, *, urls: list[str] | None = None) -> None:
        for _ in range(count):
            client = ResilientClient(
                f"c{len(self.clients)}",
                urls or self.urls,
                list(self.rooms),
                self.history,
                rng=random.Random(self.rng.random()),
                first=len(self.clients),
            )
            self.clients.append(await client.start())
        await check_for(
            30, lambda: all(c.connected.is_set() for c in self.clients), what="clients joined"
        )

    def start_load(self, **options: Any) -> Load:
        self.load = Load(self.clients, self.rooms, **options).start()
        return self.load

    def start_flood(
        self, client: ResilientClient, *, rate: float = 200.0, size: int = 3000
    ) -> Load:
        """Extra load from one client: big messages, fast (scenario 7)."""
        self.flood = Load(
            [client], self.rooms, rate=rate, window=16, prefix="flood", text_size=size
        ).start()
        return self.flood

    async def stop_flood(self) -> None:
        if self.flood is not None:
            await self.flood.stop()
            assert self.load is not None
            self.load.failures.extend(self.flood.failures)

    async def acks_reach(
        self,
        count: int,
        timeout: float = 60.0,
        *,
        each: bool = True,
        clients: list[ResilientClient] | None = None,
    ) -> None:
        """Wait until every client (or all together) has ``count`` more acks than now."""
        base = self._ack_counts()
        names = [c.name for c in (clients if clients is not None else self.clients)]

        def reached() -> bool:
            now = self._ack_counts()
            if each:
                return all(now.get(n, 0) - base.get(n, 0) >= count for n in names)
            return sum(now.get(n, 0) - base.get(n, 0) for n in names) >= count

        await check_for(timeout, reached, interval=0.05, what=f"{count} more acks")

    def _ack_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ack in self.history.acks:
            counts[ack.client] = counts.get(ack.client, 0) + 1
        return counts

    async def close(self) -> None:
        for client in self.clients:
            await client.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        for node in self.cluster.nodes:
            node.signal(signal.SIGCONT)
        if self.net is not None:
            self.net.heal()
        self.gateways.stop_all()
        await self.cluster.stop()
        if self.net is not None:
            self.net.destroy()

    # faults -------------------------------------------------------------------------

    async def leader(self, room: str | None = None) -> str:
        stream = self.streams()[room or self.rooms[0]]
        name: str = await self.cluster.wait_for_stream_leader(stream, timeout=30)
        return name

    def kill_gateway(self, index: int, sig: int = signal.SIGKILL) -> int:
        proc, port = self.gateways.procs[index]
        os.kill(proc.pid, sig)
        proc.wait(10)
        return port

    def restart_gateway(self, index: int) -> None:
        """Start a new gateway process on the port of (dead) gateway ``index``."""
        proc, port = self.gateways.procs[index]
        assert proc.poll() is not None, "restart_gateway needs a dead gateway"
        with open(self.tmp / f"gateway-{port}.log", "ab") as log_file:
            new = subprocess.Popen(
                [sys.executable, "-m", "natter", "gateway", "--port", str(port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={
                    **os.environ,
                    "NATTER_NATS_URL": self.cluster.nats_url,
                    "NATTER_LOG_FORMAT": "json",
                    **self.gateways.env,
                },
                start_new_session=True,
            )
        self.gateways.procs[index] = (new, port)

    async def _leaders(self, room: str, *, skip: str | None = None) -> dict[str, str]:
        """Each running node's (except ``skip``) idea of the room's stream leader."""
        stream = self.streams()[room]
        views: dict[str, str] = {}
        async with httpx.AsyncClient(timeout=1.0) as http:
            for node in self.cluster.nodes:
                if node.name == skip or not node.running():
                    continue
                try:
                    resp = await http.get(
                        f"{node.monitor_url}/jsz",
                        params={"streams": "true", "accounts": "true", "acc": "$G"},
                    )
                except httpx.HTTPError:
                    continue
                for acc in resp.json().get("account_details") or []:
                    for info in acc.get("stream_detail") or []:
                        if info.get("name") == stream:
                            views[node.name] = (info.get("cluster") or {}).get("leader") or ""
        return views

    async def leader_moved_while(
        self, victim: str, *, alive: Any, timeout: float = 60.0, room: str | None = None
    ) -> bool:
        """True once another node reports a new leader while ``alive()`` still holds."""
        room = room or self.rooms[0]

        async def moved() -> bool | None:
            still = bool(alive())
            views = await self._leaders(room, skip=victim)
            if any(leader and leader != victim for leader in views.values()):
                return True if still else None
            if not still:
                raise _Gone()
            return None

        try:
            await check_for(timeout, moved, interval=0.05, what=f"leadership away from {victim}")
        except _Gone:
            return False
        return True

    async def single_leader(self, timeout: float = 60.0) -> dict[str, str]:
        """Wait until all nodes name the same leader for every room; return it."""

        async def agreed() -> dict[str, str] | None:
            out = {}
            for room in self.rooms:
                views = await self._leaders(room)
                leaders = set(views.values())
                if len(views) != len(self.cluster.nodes) or len(leaders) != 1 or "" in leaders:
                    return None
                out[room] = leaders.pop()
            return out

        result: dict[str, str] = await check_for(timeout, agreed, interval=0.1, what="one leader")
        return result

    async def wait_current(self, timeout: float = 60.0) -> None:
        """Wait until every room's leader sees both followers current."""

        async def current() -> bool:
            async with httpx.AsyncClient(timeout=1.0) as http:
                for stream in self.streams().values():
                    leader = await self.cluster.stream_leader(stream)
                    if leader is None:
                        return False
                    node = self.cluster.node(leader)
                    resp = await http.get(
                        f"{node.monitor_url}/jsz",
                        params={"streams": "true", "accounts": "true", "acc": "$G"},
                    )
                    for acc in resp.json().get("account_details") or []:
                        for info in acc.get("stream_detail") or []:
                            if info.get("name") != stream:
                                continue
                            replicas = (info.get("cluster") or {}).get("replicas") or []
                            if len(replicas) != 2 or not all(r.get("current") for r in replicas):
                                return False
            return True

        await check_for(timeout, current, interval=0.1, what="replicas current")

    async def make_leader(self, name: str, room: str | None = None, timeout: float = 30.0) -> None:
        """Ask the room's stream leader to step down in favour of ``name``."""
        stream = self.streams()[room or self.rooms[0]]
        body = json.dumps({"placement": {"preferred": name}}).encode()

        async def led() -> bool:
            if await self.cluster.stream_leader(stream) == name:
                return True
            with contextlib.suppress(Exception):
                await self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, timeout=2)
            return False

        await check_for(timeout, led, interval=0.5, what=f"{name} leading {stream}")

    async def observe_outage(self, until: float) -> dict[str, Any]:
        """Watch the gateways while NATS is down: alive, not ready, answering unavailable."""
        seen = {"always_alive": True, "not_ready": False, "probes": 0}
        async with httpx.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < until:
                for port in self.ports:
                    base = f"http://127.0.0.1:{port}"
                    try:
                        alive = (await http.get(f"{base}/healthz")).status_code == 200
                        ready = (await http.get(f"{base}/readyz")).status_code == 200
                    except httpx.HTTPError:
                        alive, ready = False, True
                    seen["always_alive"] = bool(seen["always_alive"]) and alive
                    seen["not_ready"] = bool(seen["not_ready"]) or not ready
                    seen["probes"] = int(seen["probes"]) + 1
                # Probing at a steady pace for the length of the outage is the fault itself.
                await asyncio.sleep(min(0.5, max(0.0, until - time.monotonic())))
        started = self.history.mark_at("fault")
        seen["unavailable_seen"] = any(
            e.code == "unavailable" and e.at >= started for e in self.history.errors
        )
        return seen

    @contextlib.asynccontextmanager
    async def probe(self, node: str, room: str | None = None) -> AsyncIterator[list[Ack]]:
        """Publish straight into ``node`` (never another server) every 0.1 s; yield its acks.

        Each probe is recorded as sent by user ``probe``, so the checker also holds
        the store to it; every ack it gets is recorded too.
        """
        room = room or self.rooms[0]
        nc = await nats.connect(
            servers=[self.cluster.node(node).client_url],
            allow_reconnect=False,
            name="chaos-probe",
            error_cb=_quiet,
            disconnected_cb=_quiet_event,
        )
        js = nc.jetstream(timeout=1.0)
        acks: list[Ack] = []
        stop = asyncio.Event()

        async def publish() -> None:
            i = 0
            while not stop.is_set():
                msg_id = f"probe-{node}-{i}"
                text = f"{msg_id} into the minority"
                i += 1
                self.history.sent.append(
                    Sent("probe", "probe", room, msg_id, text, time.monotonic())
                )
                body = json.dumps({"id": msg_id, "user": "probe", "text": text, "ts": "-"}).encode()
                try:
                    ack = await js.publish(
                        f"chat.default.{room}.msg", body, headers={"Nats-Msg-Id": msg_id}
                    )
                except Exception:
                    pass
                else:
                    got = Ack("probe", room, msg_id, int(ack.seq), 0, time.monotonic())
                    acks.append(got)
                    self.history.acks.append(got)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)

        task = asyncio.create_task(publish(), name="minority-probe")
        try:
            yield acks
        finally:
            stop.set()
            await task
            with contextlib.suppress(Exception):
                await nc.close()

    # after the fault ------------------------------------------------------------------

    async def finish(self, name: str, *, start: float, catch_up: float = 60.0) -> Outcome:
        """Stop the load, let every client catch up, read the streams back and check."""
        assert self.load is not None
        end = time.monotonic()
        await self.load.stop()
        targets = await self._last_seqs()
        caught = await asyncio.gather(*(c.caught_up(targets, catch_up) for c in self.clients))
        stored = {room: await self.read_room(room, targets[room]) for room in self.rooms}
        report = check(self.history, stored)
        if not all(caught):
            behind = [c.name for c, ok in zip(self.clients, caught, strict=True) if not ok]
            report.problem("clients never caught up", f"{behind}: targets {targets}")
        for failure in self.load.failures:
            report.problem("send never acked", repr(failure))
        figures = summary(self.history, report, start, end)
        return Outcome(name, report, figures)

    async def _last_seqs(self) -> dict[str, int]:
        """Each room's last seq once all three replicas report the same state.

        Not the leader's stream info: just after a fault a deposed leader may
        still answer with its stale view.
        """
        states = await self.replicas_agree()
        return {room: next(iter(per_node.values()))[3] for room, per_node in states.items()}

    async def read_room(self, room: str, last: int) -> list[Stored]:
        """The room's stream up to seq ``last``, read with plain nats-py (not natter.bus).

        Retried as a whole: just after a fault the server this connection uses may
        still answer "JetStream temporarily unavailable", or hand out a stale view.
        """
        stored: list[Stored] = await _retry(lambda: self._read_room(room, last), timeout=60.0)
        return stored

    async def _read_room(self, room: str, last: int) -> list[Stored]:
        out: list[Stored] = []
        if last == 0:
            return out
        js = self.nc.jetstream(timeout=5)
        sub = await js.subscribe(
            f"chat.default.{room}.>",
            stream=self.streams()[room],
            ordered_consumer=True,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
            pending_msgs_limit=1_000_000,
        )
        try:
            while True:
                # Raises TimeoutError (and the whole read is retried) if the stream
                # ends before ``last``.
                msg = await sub.next_msg(timeout=5)
                seq = int(msg.metadata.sequence.stream)
                body = json.loads(msg.data)
                out.append(Stored(seq, str(body["id"]), str(body["user"]), str(body["text"])))
                if seq >= last:
                    break
        finally:
            await sub.unsubscribe()
        return out

    async def replica_states(self, room: str) -> dict[str, tuple[int, int, int, int]]:
        """Each running node's own view of the room's stream: (messages, bytes, first, last)."""
        stream = self.streams()[room]
        out: dict[str, tuple[int, int, int, int]] = {}
        async with httpx.AsyncClient(timeout=2.0) as http:
            for node in self.cluster.nodes:
                if not node.running():
                    continue
                resp = await http.get(
                    f"{node.monitor_url}/jsz",
                    params={"streams": "true", "accounts": "true", "acc": "$G"},
                )
                for acc in resp.json().get("account_details") or []:
                    for info in acc.get("stream_detail") or []:
                        if info.get("name") == stream:
                            s = info["state"]
                            out[node.name] = (
                                s["messages"],
                                s["bytes"],
                                s["first_seq"],
                                s["last_seq"],
                            )
        return out

    async def replicas_agree(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until all three replicas of every room report the same state."""

        async def agree() -> dict[str, Any] | None:
            states = {room: await self.replica_states(room) for room in self.rooms}
            for per_node in states.values():
                if len(per_node) != len(self.cluster.nodes) or len(set(per_node.values())) != 1:
                    return None
            return states

        result: dict[str, Any] = await check_for(
            timeout, agree, interval=0.25, what="replicas agree"
        )
        return result


async def _quiet(exc: Exception) -> None:
    """The checker's own connection sees every fault too; that is not news."""


async def _quiet_event() -> None:
    pass


class _Gone(Exception):
    """The fault ended before what we waited for happened."""


async def _retry(call: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(tmp: Path, *, split: bool = False, **start: Any) -> AsyncIterator[Harness]:
    harness = Harness(tmp, split=split)
    try:
        await harness.start(**start)
        yield harness
    finally:
        await harness.close()
