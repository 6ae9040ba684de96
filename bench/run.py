"""Run the benchmark suite: ``python -m bench.run [--smoke] [--targets natter,origin,...]``.

Starts one JetStream node (with its WebSocket listener) and Redis on free
loopback ports, then for each target: fan-out with a rate search and latency at
25/50/90 % of the maximum, resident memory per idle connection at 1,000 and
10,000 connections, acked publishes, history replay and connection churn. The
load generator (``bench/loadgen``, Go) takes every measurement at the clients;
results go to ``bench/results/latest.json`` and ``bench/REPORT.md`` is rendered
from them (``python -m bench.report`` re-renders without running).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import targets
from bench.procs import BIN, REPO, machine, raise_nofile, tool_version
from bench.targets import Backend, Running

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Params:
    rooms: int = 10
    conns: int = 1000
    pubs: int = 10
    size: int = 100
    step: float = 5.0
    warm: float = 1.0
    max_steps: int = 10
    rates: str = "auto"
    fractions: str = "0.25,0.5,0.9"
    idle: tuple[int, ...] = (1000, 10000)
    publish_pubs: int = 50
    publish_window: int = 16
    publish_seconds: float = 5.0
    replay: int = 100_000
    churn_workers: int = 20
    churn_seconds: float = 5.0
    settle: float = 3.0


FULL = Params()
SMOKE = Params(
    rooms=2,
    conns=20,
    pubs=2,
    step=1.0,
    warm=0.3,
    rates="20,40",
    fractions="",
    idle=(50,),
    publish_pubs=2,
    publish_window=4,
    publish_seconds=1.0,
    replay=2000,
    churn_workers=2,
    churn_seconds=1.0,
    settle=0.5,
)


def go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise RuntimeError("Go toolchain not found (needed to build the load generator and peers)")
    return found


def build(what: str, out: str) -> Path:
    """``go build`` a program of bench/ into the cache (incremental, so cheap when unchanged)."""
    BIN.mkdir(parents=True, exist_ok=True)
    target = BIN / out
    subprocess.run(
        [go(), "build", "-o", str(target), "."],
        cwd=REPO / "bench" / what,
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    return target


class Loadgen:
    def __init__(self, binary: Path, logs: Path) -> None:
        self.binary = binary
        self.logs = logs

    def __call__(
        self, run: Running | None, scenario: str, timeout: float = 300.0, **flags: Any
    ) -> dict[str, Any]:
        args = [str(self.binary), "-scenario", scenario, "-timeout", f"{int(timeout)}s"]
        if run is not None:
            args += [
                "-target",
                run.name,
                "-url",
                run.url,
                "-pids",
                ",".join(map(str, run.gateway)),
                "-backend-pids",
                ",".join(map(str, run.backend)),
            ]
        for key, value in flags.items():
            args.append(f"-{key.replace('_', '-')}={value}")
        name = f"{run.name if run else 'loadgen'}-{scenario}"
        with open(self.logs / f"loadgen-{name}.log", "ab") as err:
            out = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, timeout=timeout + 30)
        if out.returncode != 0:
            tail = (self.logs / f"loadgen-{name}.log").read_text(errors="replace")[-800:]
            raise RuntimeError(f"loadgen {scenario} failed ({out.returncode}): {tail}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


ALL = ("fanout", "publish", "replay", "churn", "idle")


def run_target(
    name: str,
    p: Params,
    backend: Backend,
    lg: Loadgen,
    logs: Path,
    rooms: list[str],
    replay_room: str,
    only: tuple[str, ...] = ALL,
) -> dict[str, Any]:
    starter = targets.STARTERS[name]
    out: dict[str, Any] = {"label": targets.LABELS[name]}
    common = {"rooms": ",".join(rooms), "size": p.size}

    def fresh() -> Running:
        return starter(backend, logs)

    def attempt(key: str, fn: Any) -> None:
        if key.split("_")[0] not in only:
            return
        try:
            out[key] = fn()
        except Exception as exc:  # one failing metric must not lose the others
            log(f"{name} {key} failed: {exc}")
            out.setdefault("failures", {})[key] = str(exc)[-600:]

    run = fresh()
    try:
        log(f"{name}: fan-out, {p.conns} connections over {p.rooms} rooms")
        attempt(
            "fanout",
            lambda: lg(
                run,
                "fanout",
                timeout=600,
                conns=p.conns,
                pubs=p.pubs,
                step=f"{p.step}s",
                warm=f"{p.warm}s",
                max_steps=p.max_steps,
                rates=p.rates,
                fractions=p.fractions,
                concurrency=50,
                **common,
            ),
        )
        log(f"{name}: acked publishes")
        attempt(
            "publish",
            lambda: lg(
                run,
                "publish",
                pubs=p.publish_pubs,
                window=p.publish_window,
                duration=f"{p.publish_seconds}s",
                warm=f"{p.warm}s",
                **common,
            ),
        )
        if name != "centrifugo":
            log(f"{name}: history replay")
            attempt(
                "replay",
                lambda: lg(
                    run, "replay", rooms=replay_room, count=p.replay, size=p.size, timeout=240
                ),
            )
        else:
            out["replay_na"] = (
                "Centrifugo's NATS broker keeps no history "
                "(its docs: 'does not support history, recovery or cache')"
            )
        log(f"{name}: connection churn")
        attempt(
            "churn",
            lambda: lg(
                run, "churn", concurrency=p.churn_workers, duration=f"{p.churn_seconds}s", **common
            ),
        )
    finally:
        run.stop()
    for n in p.idle if "idle" in only else ():
        key = f"idle_{n}"
        log(f"{name}: {n} idle connections")
        run = fresh()
        try:
            attempt(
                key,
                lambda n=n, run=run: lg(
                    run,
                    "idle",
                    conns=n,
                    concurrency=100,
                    settle=f"{p.settle}s",
                    timeout=300,
                    **common,
                ),
            )
        finally:
            run.stop()
    if name == "natter" and "idle" in only and p.idle:
        n = p.idle[0]
        log(f"{name}: {n} idle connections offering permessage-deflate, gateway accepting it")
        run = targets.start_natter(backend, logs, env={"NATTER_WS_PER_MESSAGE_DEFLATE": "true"})
        try:
            attempt(
                f"idle_{n}_deflate",
                lambda: lg(
                    run,
                    "idle",
                    conns=n,
                    concurrency=100,
                    settle=f"{p.settle}s",
                    compress="true",
                    timeout=300,
                    **common,
                ),
            )
        finally:
            run.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run (CI)")
    parser.add_argument("--targets", default=",".join(targets.TARGETS))
    parser.add_argument("--scenarios", default=",".join(ALL), help="subset of " + ",".join(ALL))
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="NAME=VALUE for the natter gateway (try a setting)",
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep the other targets' results already in --out"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--report",
        default=str(REPO / "bench" / "REPORT.md"),
        help="where to render the report ('' to skip)",
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: tmp)")
    args = parser.parse_args(argv)
    p = SMOKE if args.smoke else FULL
    # SIGTERM unwinds like Ctrl-C, so every started process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    targets.EXTRA_ENV.update(dict(e.split("=", 1) for e in args.env))
    wanted = [t for t in args.targets.split(",") if t]
    raise_nofile()
    work = args.work or Path(tempfile.mkdtemp(prefix="natter-bench-"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log(f"scratch and logs in {work}")
    lg = Loadgen(build("loadgen", "loadgen"), logs)
    if "origin" in wanted:
        build("peers/origin", "origin-peer")
    rooms = [f"bench-{i}" for i in range(p.rooms)]
    replay_room = "bench-replay"
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "params": asdict(p),
        "natter_env": targets.EXTRA_ENV,
        "machine": machine(),
        "targets": {},
    }
    backend = Backend(work)
    try:
        backend.start_nats([*rooms, replay_room])
        results["machine"]["nats_server"] = tool_version(
            [targets.nats_server_binary(), "--version"]
        )
        if "socketio" in wanted:
            backend.start_redis()
        log(f"filling {replay_room} with {p.replay} messages")
        results["fill"] = lg(
            None,
            "fill",
            nats=backend.nats_url,
            rooms=replay_room,
            count=p.replay,
            size=p.size,
            url=backend.nats_url,
        )
        if "socketio" in wanted:
            backend.fill_redis(replay_room, p.replay, "~lg~0~".ljust(p.size, "x"))
        for name in wanted:
            reason = targets.unavailable(name)
            if reason:
                log(f"{name}: skipped: {reason}")
                results["targets"][name] = {"label": targets.LABELS[name], "unavailable": reason}
                continue
            only = tuple(args.scenarios.split(","))
            results["targets"][name] = run_target(
                name, p, backend, lg, logs, rooms, replay_room, only
            )
            results["machine"].setdefault("loadavg_during", []).append(list(os.getloadavg()))
    finally:
        backend.stop()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    if "centrifugo" in wanted and targets.centrifugo_binary().exists():
        # go install leaves the binary's own version stamp at v0.0.0; setup.sh records the module's
        built = sorted(p.name.removeprefix("centrifugo.") for p in BIN.parent.glob("centrifugo.v*"))
        results["machine"]["centrifugo"] = (
            f"github.com/centrifugal/centrifugo/v6@{built[-1]}"
            if built
            else tool_version([str(targets.centrifugo_binary()), "version"])
        )
    if args.merge and args.out.exists():
        previous = json.loads(args.out.read_text())
        for name, result in previous.get("targets", {}).items():
            results["targets"].setdefault(name, result)
        results["merged_from"] = previous.get("started")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    log(f"results written to {args.out}")
    if args.report:
        from bench import report

        results["_path"] = str(args.out)
        report.render(results, Path(args.report))
        log(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
