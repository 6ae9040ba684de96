"""Soak natter under faults for N minutes and print the figures.

    .venv/bin/python -m bench.soak --minutes 10 --fault sigkill-leader
    make soak SOAK_ARGS="--minutes 30 --fault gateway-kill"

One harness (3 NATS nodes, 2 gateways, 4 resilient clients in two R3 rooms)
runs steady load for the whole time while the chosen fault repeats every
``--every`` seconds, each time waiting for recovery. At the end every client
catches up, the rooms are read back and the history checker runs. Printed:
messages sent, acked, lost and delivered twice; ack latency; and per fault the
seconds without acks (median and worst). Exits 1 if the checker found anything.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.chaos.checker import longest_ack_gap
from tests.chaos.harness import Harness, running

Fault = Callable[[Harness], Awaitable[None]]


async def _none(h: Harness) -> None:
    await h.acks_reach(20)


async def _sigkill_leader(h: Harness) -> None:
    victim = await h.leader()
    h.cluster.kill(victim)
    await h.acks_reach(20)
    await h.cluster.restart(victim)
    await h.wait_current()


async def _lame_duck(h: Harness) -> None:
    victim = await h.leader()
    await h.cluster.lame_duck(victim)
    await h.cluster.restart(victim)
    await h.wait_current()


async def _sigstop_leader(h: Harness) -> None:
    victim = await h.leader()
    h.cluster.pause(victim)
    try:
        await h.leader_moved_while(victim, alive=lambda: True, timeout=30)
        await h.acks_reach(10, each=False)
    finally:
        h.cluster.resume(victim)
    await h.single_leader()


async def _gateway_kill(h: Harness) -> None:
    index = int(time.monotonic()) % len(h.ports)
    h.kill_gateway(index, signal.SIGKILL)
    await h.acks_reach(10)
    h.restart_gateway(index)
    await h.gateways.wait_ready(h.ports[index], timeout=60)


FAULTS: dict[str, Fault] = {
    "none": _none,
    "sigkill-leader": _sigkill_leader,
    "lame-duck-restart": _lame_duck,
    "sigstop-leader": _sigstop_leader,
    "gateway-kill": _gateway_kill,
}


async def soak(minutes: float, fault: str, every: float, base: Path) -> int:
    async with running(base) as h:
        await h.start_clients(4)
        h.start_load()
        await h.acks_reach(20)
        start = h.history.mark("steady")
        until = start + minutes * 60
        gaps: list[float] = []
        while time.monotonic() < until:
            at = h.history.mark("fault")
            await FAULTS[fault](h)
            await h.acks_reach(10)
            # Steady load between faults: the soak's pacing, not synchronization.
            await asyncio.sleep(max(0.0, min(until, at + every) - time.monotonic()))
            gaps.append(longest_ack_gap(h.history, at, time.monotonic()))
            print(
                f"  {fault} #{len(gaps)}: {gaps[-1]:.2f}s without acks; "
                f"{len(h.history.acks)} acked so far",
                file=sys.stderr,
                flush=True,
            )
        outcome = await h.finish(f"soak {fault}", start=start, catch_up=120)
        elapsed = time.monotonic() - start
    figures = outcome.figures
    print(f"\nsoak: {fault} every {every:.0f}s for {elapsed / 60:.1f} min ({len(gaps)} faults)")
    print(
        f"  sent {outcome.report.sent}, acked {figures['acked']} "
        f"({figures['acked'] / elapsed:.0f}/s), stored {outcome.report.stored}"
    )
    print(
        f"  lost {outcome.report.lost}, duplicates delivered "
        f"{outcome.report.duplicates_delivered}, missed {outcome.report.missed}"
    )
    print(
        f"  ack latency p50 {figures['ack_p50_s'] * 1000:.0f} ms, "
        f"p99 {figures['ack_p99_s'] * 1000:.0f} ms"
    )
    if gaps:
        print(
            f"  seconds without acks per fault: median {statistics.median(gaps):.2f}, "
            f"worst {max(gaps):.2f}"
        )
    print(f"  checker: {'pass' if outcome.report.ok else 'FAIL'}")
    if not outcome.report.ok:
        print(outcome.report.describe())
    return 0 if outcome.report.ok else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--fault", choices=sorted(FAULTS), default="sigkill-leader")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--dir", type=Path, default=None, help="where run data goes")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="natter-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(soak(args.minutes, args.fault, args.every, base)))


if __name__ == "__main__":
    cli()
