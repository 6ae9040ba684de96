"""The chaos scenarios of issue 5, each a coroutine over a started :class:`Harness`.

Every scenario puts four resilient clients (two per gateway) under steady load
in two R3 rooms, injects its fault, waits for the system to recover by
watching acks (never by sleeping), stops the load, lets every client catch up
and hands the history to the checker. Durations that *are* the fault (how
long a node stays paused, a partition stays cut, NATS stays down) are the only
fixed waits. Scenario-specific evidence goes into ``Outcome.notes`` and
``Outcome.report`` problems, so a test only has to assert ``report.ok``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import httpx

from natter.embedded import check_for
from tests.chaos.harness import Harness, Outcome
from tests.chaos.slow import SlowReader

#: Raft elects a new leader 4-9 s after it stops hearing from the old one.
ELECTION_TIMEOUT = 9.0
PAUSE_SECONDS = ELECTION_TIMEOUT + 3.0
PARTITION_SECONDS = 12.0
OUTAGE_SECONDS = 20.0
#: Scenario 7's bounds: p99 seconds from a send to its delivery at the other
#: clients while one socket is stuck, and growth of the gateway's resident memory.
SLOW_LAG_LIMIT = 1.0
SLOW_RSS_LIMIT = 64 * 2**20
CONNECTIONS = "natter_gateway_open_connections"

Scenario = Callable[[Harness], Awaitable[Outcome]]


async def _steady(h: Harness, clients: int = 4) -> float:
    """Start clients and load; return the time steady state began."""
    await h.start_clients(clients)
    h.start_load()
    await h.acks_reach(20)
    return h.history.mark("steady")


async def baseline(h: Harness) -> Outcome:
    """0. No fault: the figures every other scenario is compared with."""
    start = await _steady(h)
    await h.acks_reach(100)
    return await h.finish("baseline", start=start)


async def sigkill_leader(h: Harness) -> Outcome:
    """1. SIGKILL the room's stream leader under load, then bring it back."""
    start = await _steady(h)
    victim = await h.leader()
    h.history.mark("fault")
    h.cluster.kill(victim)
    await h.acks_reach(40)
    await h.cluster.restart(victim)
    await h.acks_reach(20)
    outcome = await h.finish("sigkill-leader", start=start)
    outcome.notes["victim"] = victim
    await _replicas_agree(h, outcome)
    return outcome


async def lame_duck_restart(h: Harness) -> Outcome:
    """2. Planned restart of the leader's node through lame duck (the chart's preStop)."""
    start = await _steady(h)
    victim = await h.leader()
    node = h.cluster.node(victim)
    h.history.mark("fault")
    node.stopping = True
    node.signal(signal.SIGUSR2)
    moved_first = await h.leader_moved_while(victim, alive=node.running)
    await check_for(60, lambda: not node.running(), interval=0.05, what=f"{victim} to exit")
    await h.acks_reach(20)
    await h.cluster.restart(victim)
    await h.acks_reach(20)
    outcome = await h.finish("lame-duck-restart", start=start)
    outcome.notes["victim"] = victim
    if not moved_first:
        outcome.report.problem("leadership did not move before exit", victim)
    for error in h.history.errors:
        outcome.report.problem(
            "client saw an error", f"{error.client}: {error.code} {error.message}"
        )
    await _replicas_agree(h, outcome)
    return outcome


async def sigstop_leader(h: Harness) -> Outcome:
    """3. SIGSTOP the leader for longer than an election, then SIGCONT it."""
    start = await _steady(h)
    victim = await h.leader()
    h.history.mark("fault")
    h.cluster.pause(victim)
    paused = time.monotonic()
    try:
        await h.leader_moved_while(victim, alive=lambda: True, timeout=30)
        await h.acks_reach(10, each=False)
        # The pause itself is the fault: hold it past the election timeout.
        await asyncio.sleep(max(0.0, PAUSE_SECONDS - (time.monotonic() - paused)))
    finally:
        h.cluster.resume(victim)
    h.history.mark("heal")
    await h.acks_reach(40)
    leaders = await h.single_leader()
    outcome = await h.finish("sigstop-leader", start=start)
    outcome.notes.update(victim=victim, leader_after=leaders)
    await _replicas_agree(h, outcome)
    return outcome


async def gateway_kill(h: Harness) -> Outcome:
    """4. SIGKILL a gateway worker with connected clients; restart it as a supervisor would."""
    start = await _steady(h)
    on_victim = [c for c in h.clients if c.conn is not None and c.conn.url == h.urls[0]]
    h.history.mark("fault")
    h.kill_gateway(0)
    await h.acks_reach(40)
    h.restart_gateway(0)
    await h.gateways.wait_ready(h.ports[0], timeout=60)
    await h.acks_reach(20)
    outcome = await h.finish("gateway-kill", start=start)
    outcome.notes["clients_moved"] = len(on_victim)
    if not on_victim:
        outcome.report.problem("no client was on the killed gateway", str(h.urls))
    for client in on_victim:
        if client.reconnects < 1:
            outcome.report.problem("client did not reconnect", client.name)
    return outcome


async def rolling_restart(h: Harness) -> Outcome:
    """5. Restart all three NATS nodes one at a time, lame duck first, as a rollout does."""
    start = await _steady(h)
    h.history.mark("fault")
    for node in list(h.cluster.nodes):
        await h.cluster.lame_duck(node.name, timeout=60)
        await h.cluster.restart(node.name)
        await h.wait_current()
        await h.acks_reach(10)
    outcome = await h.finish("rolling-restart", start=start)
    for error in h.history.errors:
        outcome.report.problem(
            "client saw an error", f"{error.client}: {error.code} {error.message}"
        )
    await _replicas_agree(h, outcome)
    return outcome


async def partition(h: Harness) -> Outcome:
    """6. Cut the leader's node off from the other two for > 10 s, then heal.

    Writes keep arriving at the minority: a probe publishes straight into the
    isolated node, and a third gateway is configured with that node alone (its
    two clients show whether the gateway finds its way to the majority).
    """
    assert h.net is not None and h.isolated is not None
    lone = h.cluster.node(h.isolated)
    await h.make_leader(h.isolated)
    minority_port = h.gateways.start(NATTER_NATS_URL=lone.client_url)
    await h.gateways.wait_ready(minority_port, timeout=60)
    h.ports.append(minority_port)
    await h.start_clients(4, urls=h.urls[:2])
    await h.start_clients(2, urls=[h.urls[2]])
    majority, minority = h.clients[:4], h.clients[4:]
    h.start_load()
    await h.acks_reach(20)
    start = h.history.mark("steady")
    async with h.probe(h.isolated) as probe_acks:
        cut = h.history.mark("fault")
        h.net.cut()
        try:
            await h.leader_moved_while(h.isolated, alive=lambda: True, timeout=30)
            await h.acks_reach(20, clients=majority)
            await h.acks_reach(5, clients=minority)
            # The cut itself is the fault: hold it for the whole partition time.
            await asyncio.sleep(max(0.0, PARTITION_SECONDS - (time.monotonic() - cut)))
        finally:
            h.net.heal()
        heal = h.history.mark("heal")
        await h.acks_reach(20)
    outcome = await h.finish("partition", start=start)
    # The minority never acknowledges a write: no probe ack from a second after
    # the cut (acks already on the wire) until the heal.
    during = [a for a in probe_acks if cut + 1.0 < a.at < heal]
    for ack in during:
        outcome.report.problem("minority acknowledged a write", f"{ack.id} seq {ack.seq}")
    outcome.notes.update(
        isolated=h.isolated,
        probes_acked_during_cut=len(during),
        probes_acked_after_heal=len([a for a in probe_acks if a.at >= heal]),
    )
    await _replicas_agree(h, outcome)
    return outcome


async def slow_reader(h: Harness) -> Outcome:
    """7. A client that stops reading is dropped in bounded time with bounded memory,
    while the other clients' delivery carries on."""
    start = await _steady(h)
    gw_proc, gw_port = h.gateways.procs[0]
    rss_before = _rss(gw_proc.pid)
    peak = rss_before
    # Sockets on that gateway besides the slow one; the slow reader is gone when
    # the gateway's open-connection gauge is back to this.
    others = sum(1 for c in h.clients if c.conn is not None and c.conn.url == h.urls[0])
    async with SlowReader(f"ws://127.0.0.1:{gw_port}/ws", list(h.rooms)):
        await check_for(
            10, lambda: _gateway_gauge_is(gw_port, CONNECTIONS, others + 1), what="slow reader in"
        )
        stalled = h.history.mark("fault")
        h.start_flood(h.clients[0])

        async def dropped() -> bool:
            nonlocal peak
            peak = max(peak, _rss(gw_proc.pid))
            return await _gateway_gauge_is(gw_port, CONNECTIONS, others)

        await check_for(120, dropped, interval=0.2, what="slow reader dropped")
        dropped_at = h.history.mark("dropped")
        await h.stop_flood()
    await h.acks_reach(10)
    outcome = await h.finish("slow-reader", start=start)
    lag = _delivery_lag(h, stalled, dropped_at)
    outcome.notes.update(
        dropped_after_s=round(dropped_at - stalled, 1),
        rss_growth_mb=round((peak - rss_before) / 2**20, 1),
        others_delivery_p99_s=round(lag, 3),
    )
    if lag > SLOW_LAG_LIMIT:
        outcome.report.problem("other clients' delivery slowed", f"p99 {lag:.2f}s")
    if peak - rss_before > SLOW_RSS_LIMIT:
        outcome.report.problem("gateway memory grew", f"{(peak - rss_before) / 2**20:.0f} MiB")
    return outcome


async def nats_down(h: Harness) -> Outcome:
    """8. All of NATS down for 20 s: gateways stay up, say unavailable, and recover alone."""
    start = await _steady(h)
    h.history.mark("fault")
    for node in h.cluster.nodes:
        h.cluster.kill(node.name)
    down = time.monotonic()
    observed = await h.observe_outage(until=down + OUTAGE_SECONDS)
    for node in h.cluster.nodes:
        node.start()
    h.history.mark("heal")
    await h.cluster.wait_ready(60)
    await h.acks_reach(40, timeout=120)
    outcome = await h.finish("nats-down", start=start)
    outcome.notes.update(observed)
    if not observed["always_alive"]:
        outcome.report.problem("a gateway stopped answering /healthz", str(observed))
    if not observed["not_ready"]:
        outcome.report.problem("/readyz stayed ready with NATS down", str(observed))
    if not observed["unavailable_seen"]:
        outcome.report.problem("no client was told 'unavailable'", str(observed))
    await _replicas_agree(h, outcome)
    return outcome


SCENARIOS: dict[str, Scenario] = {
    "baseline": baseline,
    "sigkill-leader": sigkill_leader,
    "lame-duck-restart": lame_duck_restart,
    "sigstop-leader": sigstop_leader,
    "gateway-kill": gateway_kill,
    "rolling-restart": rolling_restart,
    "partition": partition,
    "slow-reader": slow_reader,
    "nats-down": nats_down,
}


async def _replicas_agree(h: Harness, outcome: Outcome) -> None:
    try:
        states = await h.replicas_agree()
    except TimeoutError as exc:
        outcome.report.problem("replicas disagree", str(exc))
        return
    outcome.notes["last_seq"] = {room: next(iter(s.values()))[3] for room, s in states.items()}


def _delivery_lag(h: Harness, start: float, end: float) -> float:
    """p99 seconds from first send to delivery, over deliveries in ``[start, end]``."""
    sent = {(s.room, s.id): s.at for s in h.history.sent}
    lags = sorted(
        d.at - sent[(d.room, d.id)]
        for d in h.history.deliveries
        if start <= d.at <= end and (d.room, d.id) in sent
    )
    return lags[int(len(lags) * 0.99)] if lags else 0.0


def _rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


async def _gateway_gauge_is(port: int, name: str, value: int) -> bool:
    return await _gateway_counter(port, name) == value


async def _gateway_counter(port: int, name: str) -> float:
    async with httpx.AsyncClient(timeout=2.0) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total
