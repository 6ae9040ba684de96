"""Run each chaos scenario several times and print the figures issue 5 asks for.

    .venv/bin/python -m bench.chaos_figures              # every scenario, 5 runs each
    .venv/bin/python -m bench.chaos_figures --runs 3 sigkill-leader partition

Per scenario: median seconds of unavailability (the longest time one writing
client went without an ack), messages lost and duplicates delivered (summed
over the runs; both must be 0), and whether the checker passed every run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos import netcut, scenarios
from tests.chaos.harness import Harness, Outcome

from natter.embedded import ClusterError


async def run_once(name: str, base: Path, attempts: int = 2) -> Outcome:
    """One run; a run whose cluster or gateways never came up is tried again once."""
    for attempt in range(attempts):
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
        harness = Harness(tmp, split=name == "partition")
        try:
            try:
                await harness.start()
            except (TimeoutError, ClusterError) as exc:
                if attempt + 1 == attempts:
                    raise
                print(f"{name}: setup failed ({exc}); retrying", file=sys.stderr)
                continue
            return await scenarios.SCENARIOS[name](harness)
        finally:
            await harness.close()
    raise AssertionError("unreachable")


async def main(names: list[str], runs: int, base: Path) -> int:
    rows = []
    failed = False
    for name in names:
        if name == "partition" and netcut.available() is not None:
            print(f"skipping partition: {netcut.available()}", file=sys.stderr)
            continue
        outcomes = []
        for i in range(runs):
            started = time.monotonic()
            outcome = await run_once(name, base)
            outcomes.append(outcome)
            print(
                f"{name} run {i + 1}/{runs} ({time.monotonic() - started:.0f}s): "
                f"{'ok' if outcome.report.ok else 'FAILED'} {outcome.figures} {outcome.notes}",
                file=sys.stderr,
                flush=True,
            )
            if not outcome.report.ok:
                print(outcome.report.describe(), file=sys.stderr)
        gaps = [o.figures["unavailable_s"] for o in outcomes]
        ok = all(o.report.ok for o in outcomes)
        failed = failed or not ok
        rows.append(
            (
                name,
                statistics.median(gaps),
                min(gaps),
                max(gaps),
                sum(o.report.lost for o in outcomes),
                sum(o.report.duplicates_delivered for o in outcomes),
                sum(o.figures["acked"] for o in outcomes),
                ok,
            )
        )
    print(
        f"\n{'scenario':<18} {'unavail s (median)':>18} {'min':>6} {'max':>6} "
        f"{'lost':>5} {'dups':>5} {'acked':>7}  checker"
    )
    for name, med, low, high, lost, dups, acked, ok in rows:
        print(
            f"{name:<18} {med:>18.2f} {low:>6.2f} {high:>6.2f} {lost:>5} {dups:>5} "
            f"{acked:>7}  {'pass' if ok else 'FAIL'} ({runs} runs)"
        )
    return 1 if failed else 0


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(scenarios.SCENARIOS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where run data goes (default: a temp dir)"
    )
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(scenarios.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; pick from {list(scenarios.SCENARIOS)}")
    base = args.dir or Path(tempfile.mkdtemp(prefix="natter-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main(args.scenarios, args.runs, base)))


if __name__ == "__main__":
    cli()
