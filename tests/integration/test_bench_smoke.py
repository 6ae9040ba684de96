"""A short run of the benchmark suite (bench/): it builds, runs every scenario, reports.

Numbers are not checked against targets here (benchmarks are not tests); this only
proves that ``make bench`` works end to end: the Go load generator builds, natter
and the raw NATS WebSocket peer serve it, and REPORT.md plus plots are rendered.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _go() -> str | None:
    return shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_smoke(tmp_path: Path) -> None:
    if _go() is None:
        pytest.skip("the Go toolchain builds the load generator")
    results, report = tmp_path / "results.json", tmp_path / "REPORT.md"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--targets",
            "natter,natsws",
            "--out",
            str(results),
            "--report",
            str(report),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/local/go/bin"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(results.read_text())
    for name in ("natter", "natsws"):
        target = data["targets"][name]
        assert not target.get("failures"), target.get("failures")
        steps = target["fanout"]["steps"]
        assert steps and all(s["delivered"] > 0 for s in steps), steps
        assert target["fanout"]["connect_failures"] == 0
        assert target["publish"]["acks"] > 0, target["publish"]
        assert target["replay"]["complete"], target["replay"]
        assert target["churn"]["cycles"] > 0, target["churn"]
        idle = target["idle_50"]
        assert idle["connections"] == 50 and idle["probe_received"] == idle["probe_expected"], idle
    text = report.read_text()
    assert "## Headline: natter against each peer" in text
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra draws plots
        assert (tmp_path / "latency_vs_rate.png").stat().st_size > 0
        assert (tmp_path / "memory_vs_connections.png").stat().st_size > 0
