"""The chaos tier: each scenario of issue 5 once, judged by the history checker.

Every test runs a fresh 3-node cluster, two gateways and four resilient clients
under load, injects one fault and asserts the checker found nothing: no acked
message lost, none delivered twice or out of order, no client missing any, all
clients agreeing with the store, plus the scenario's own criteria. The figures
(seconds without acks and so on) are printed; ``bench/chaos_figures.py``
repeats the runs for medians.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import netcut, scenarios
from tests.chaos.harness import Outcome, running

pytestmark = pytest.mark.slow


def _judge(outcome: Outcome) -> None:
    print(f"\n{outcome.describe()}")
    assert outcome.report.lost == 0, outcome.describe()
    assert outcome.report.duplicates_delivered == 0, outcome.describe()
    assert outcome.report.ok, outcome.describe()


@pytest.mark.parametrize(
    "name",
    [
        "sigkill-leader",
        "lame-duck-restart",
        "sigstop-leader",
        "gateway-kill",
        "rolling-restart",
        "slow-reader",
        "nats-down",
    ],
)
async def test_scenario(name: str, tmp_path: Path) -> None:
    async with running(tmp_path) as harness:
        _judge(await scenarios.SCENARIOS[name](harness))


async def test_partition(tmp_path: Path) -> None:
    why = netcut.available()
    if why is not None:
        pytest.skip(f"cannot make a network partition here: {why}")
    async with running(tmp_path, split=True) as harness:
        outcome = await scenarios.partition(harness)
    _judge(outcome)
    assert outcome.notes["probes_acked_during_cut"] == 0
